"""Whisper's encoder in onnxruntime: the same weights as CTranslate2's, for CPUs where CTranslate2 runs on oneDNN and
the CPU has VNNI (there onnxruntime's u8s8 products are the cheaper ones; decision record 0007).

The graph is built in memory from the CTranslate2 model folder (`processors.whisper_graph`). Both convolutions of the
front end are written as int8 products over three shifted copies of their input (kernel 3, padding 1; the second
strided by 2), so every weight matrix of the encoder is int8, as in CTranslate2; attention stays in float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moodstream.processors.whisper_graph import (
    Graph,
    cpu_has_vnni,
    dense,
    read_ct2_variables,
    return_freed_memory,
    split,
    tensor,
)

MEL_BANDS = 80


def _convolution(g: Graph, x: str, frames: str, weight: np.ndarray, bias: np.ndarray, stride: int) -> str:
    """A kernel-3, padding-1 convolution over time of x [B, T, C] as one int8 product: the three shifted copies of x
    side by side [B, T/stride, 3C] times the kernel laid out to match [O, 3C] -> [B, T/stride, O]."""
    padded = g.node("Pad", [x, g.const(np.array([0, 1, 0, 0, 1, 0], np.int64))])
    axis, step = g.const(np.array([1])), g.const(np.array([stride]))
    shifted = [
        g.node("Slice", [padded, g.const(np.array([k])), g.node("Add", [frames, g.const(np.array([k]))]), axis, step])
        for k in range(weight.shape[2])
    ]
    outputs, channels, width = weight.shape
    kernel = weight.astype(np.float32).transpose(0, 2, 1).reshape(outputs, width * channels)
    return g.linear(g.node("Concat", shifted, axis=-1), kernel, bias)


def _encoder_graph(weights: dict[str, np.ndarray], signed: bool) -> bytes:
    """Log-mel features [B, 80, F] -> the encoder's states [B, F/2, W]: two GELU convolutions, positions, pre-norm
    self-attention layers, a final layer norm (Whisper's encoder)."""
    g = Graph(signed)
    heads = int(weights["encoder/num_heads"])
    width = weights["encoder/conv1/bias"].shape[0]
    layers = sum(1 for name in weights if name.startswith("encoder/layer_") and name.endswith("ffn/linear_0/weight"))
    time_major = g.node("Transpose", ["mel"], perm=[0, 2, 1])
    frames = g.node("Slice", [g.node("Shape", [time_major]), g.const(np.array([1])), g.const(np.array([2]))])
    x = time_major
    for i, stride in ((1, 1), (2, 2)):
        conv = _convolution(g, x, frames, weights[f"encoder/conv{i}/weight"], weights[f"encoder/conv{i}/bias"], stride)
        x = g.node("Gelu", [conv], domain="com.microsoft")
    positions = weights["encoder/position_encodings/encodings"].astype(np.float32)
    states = g.node("Slice", [g.node("Shape", [x]), g.const(np.array([1])), g.const(np.array([2]))])
    x = g.node("Add", [x, g.node("Slice", [g.const(positions), g.const(np.array([0])), states])])
    for i in range(layers):
        p = f"encoder/layer_{i}"
        qkv = dense(
            g, g.layer_norm(x, weights, f"{p}/self_attention/layer_norm"), weights, f"{p}/self_attention/linear_0"
        )
        q, k, v = (g.heads(split(g, qkv, j, width), heads) for j in range(3))
        attended = g.attend(q, g.node("Transpose", [k], perm=[0, 1, 3, 2]), v, width // heads)
        x = g.node("Add", [x, dense(g, attended, weights, f"{p}/self_attention/linear_1")])
        up = dense(g, g.layer_norm(x, weights, f"{p}/ffn/layer_norm"), weights, f"{p}/ffn/linear_0")
        x = g.node("Add", [x, dense(g, g.node("Gelu", [up], domain="com.microsoft"), weights, f"{p}/ffn/linear_1")])
    x = g.layer_norm(x, weights, "encoder/layer_norm")
    return g.model([tensor("mel", ["batch", MEL_BANDS, "frames"])], [tensor("states", ["batch", "states", width])],
                   {"states": x})  # fmt: skip


class WhisperEncoder:
    """Whisper's encoder in onnxruntime. One call at a time."""

    def __init__(self, model_dir: Path, threads: int = 1, signed_weights: bool | None = None) -> None:
        """`signed_weights`: None chooses by the CPU (`cpu_has_vnni`)."""
        from moodstream.processors.onnx import cpu_session_from_bytes

        signed = cpu_has_vnni() if signed_weights is None else signed_weights
        graph = _encoder_graph(read_ct2_variables(model_dir / "model.bin"), signed)
        self._session = cpu_session_from_bytes(graph, threads, arena=False)
        return_freed_memory()

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """Log-mel features [1, 80, F] (F even, at most 3000) -> states [1, F/2, W]."""
        return self._session.run(None, {"mel": np.ascontiguousarray(mel, dtype=np.float32)})[0]
