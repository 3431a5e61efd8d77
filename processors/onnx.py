"""The one way the cores open an ONNX model: onnxruntime on the CPU with a fixed thread count, and a short version
string that changes whenever the model file does."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnxruntime as ort


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime session with `threads` intra-op threads, one inter-op thread and full graph optimisation."""
    return ort.InferenceSession(str(path), _cpu_options(threads), providers=["CPUExecutionProvider"])


def _cpu_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def model_version(name: str, path: Path) -> str:
    """`name:` and the first 12 hex digits of the file's SHA-256 (results carry it, so a model change is visible)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{name}:{digest.hexdigest()[:12]}"


def cpu_session_from_bytes(model: bytes, threads: int = 1, arena: bool = True) -> ort.InferenceSession:
    """`cpu_session` for a model built in memory; `arena=False` allocates each tensor afresh instead of keeping a
    growing pool (for sessions run many times a call with small tensors, where the pool only costs memory)."""
    options = _cpu_options(threads)
    options.enable_cpu_mem_arena = arena
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
