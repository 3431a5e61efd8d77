"""The one way the cores open an ONNX model: onnxruntime on the CPU with a fixed thread count, and a short version
string that changes whenever the model file does."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnxruntime as ort


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime session with `threads` intra-op threads, one inter-op thread and full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def model_version(name: str, path: Path) -> str:
    """`name:` and the first 12 hex digits of the file's SHA-256 (results carry it, so a model change is visible)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{name}:{digest.hexdigest()[:12]}"
