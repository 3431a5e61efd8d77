"""What Whisper's graphs in onnxruntime are built from: the arrays of a CTranslate2 `model.bin`, a small ONNX graph
builder with int8 linear layers, and the CPU facts that choose how their weights are stored.

The graphs are built in memory from the CTranslate2 model folder when a model is made: nothing is written to disk and
nothing is fetched. Weights are quantized to 8 bits per output channel, symmetric around zero as CTranslate2's int8
are; activations are quantized per call by `DynamicQuantizeMatMul`, which packs the weights once, when the session is
made. Decision record 0007 has the measurements.
"""

from __future__ import annotations

import ctypes
import re
import struct
from pathlib import Path

import numpy as np

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)
LN_EPSILON = 1e-5


def read_ct2_variables(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 `model.bin` (binary version 6), aliases resolved: read-only views of the
    file mapped into memory, so only what is read is loaded, and processes reading the same file share it."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    offset = 0

    def unpack(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        size = unpack("H")
        text = bytes(data[offset : offset + size - 1]).decode("utf-8")
        offset += size
        return text

    if (version := unpack("I")) != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}, expected 6")
    string(), unpack("I")  # spec name, spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dtype = np.dtype(_DTYPES[unpack("B")])
        size = unpack("I")
        variables[name] = np.frombuffer(data, dtype, size // dtype.itemsize, offset).reshape(shape)
        offset += size
    for _ in range(unpack("I")):
        alias = string()
        variables[alias] = variables[string()]
    return variables


class Graph:
    """A small ONNX graph builder: initializers, nodes, and int8 linear layers (`signed_weights`: see `linear`)."""

    def __init__(self, signed_weights: bool = False) -> None:
        from onnx import numpy_helper

        self.signed_weights = signed_weights
        self._array = numpy_helper.from_array
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        name = self.name(hint)
        self.initializers.append(self._array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str = "t", domain: str = "", **attrs: object) -> str:
        from onnx import helper

        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], domain=domain, **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None) -> str:
        """x @ weight.T (+ bias), the weight int8 per output channel, the activation quantized per call."""
        if weight.dtype.kind != "f":
            raise ValueError(f"decoder weights stored as {weight.dtype}: only float16/float32 models are read")
        matrix = weight.astype(np.float32).T  # [in, out]
        scale = np.maximum(np.abs(matrix).max(axis=0), 1e-8) / 127.0
        quantized = np.clip(np.round(matrix / scale), -127, 127)
        if self.signed_weights:  # onnxruntime's u8s8 kernels: exact and fastest where the CPU has VNNI
            stored, zero_points = quantized.astype(np.int8), np.zeros(matrix.shape[1], np.int8)
        else:  # u8u8: u8s8 saturates on AVX2 without VNNI (+1.3 WER points on the long read set)
            stored, zero_points = (quantized + 128).astype(np.uint8), np.full(matrix.shape[1], 128, np.uint8)
        inputs = [x, self.const(stored, "w"), self.const(scale.astype(np.float32), "s"), self.const(zero_points, "z")]
        if bias is not None:
            inputs.append(self.const(bias.astype(np.float32), "b"))
        return self.node("DynamicQuantizeMatMul", inputs, "lin", domain="com.microsoft")

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
        gamma = self.const(weights[f"{prefix}/gamma"].astype(np.float32), "g")
        beta = self.const(weights[f"{prefix}/beta"].astype(np.float32), "be")
        return self.node("LayerNormalization", [x, gamma, beta], "ln", axis=-1, epsilon=LN_EPSILON)

    def heads(self, x: str, heads: int) -> str:
        """[B, T, H*D] -> [B, H, T, D]."""
        shaped = self.node("Reshape", [x, self.const(np.array([0, 0, heads, -1], np.int64))])
        return self.node("Transpose", [shaped], perm=[0, 2, 1, 3])

    def attend(self, q: str, k_transposed: str, v: str, head_dim: int, mask: str | None = None) -> str:
        """softmax(q k^T / sqrt(d) + mask) v for k^T [B, H, D, S] and an additive mask [T, S] (None: every position
        sees every key), heads merged back: [B, T, H*D]."""
        scores = self.node("MatMul", [q, k_transposed])
        scaled = self.node("Mul", [scores, self.const(np.array(head_dim**-0.5, np.float32))])
        if mask is not None:
            scaled = self.node("Add", [scaled, mask])
        mixed = self.node("MatMul", [self.node("Softmax", [scaled], axis=-1), v])
        merged = self.node("Transpose", [mixed], perm=[0, 2, 1, 3])
        return self.node("Reshape", [merged, self.const(np.array([0, 0, -1], np.int64))])

    def model(self, inputs: list, outputs: list, outputs_from: dict[str, str]) -> bytes:
        from onnx import helper

        for output in outputs:
            self.nodes.append(helper.make_node("Identity", [outputs_from[output.name]], [output.name]))
        graph = helper.make_graph(self.nodes, "whisper", inputs, outputs, self.initializers)
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def tensor(name: str, dims: list[str | int]) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def dense(g: Graph, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
    """The linear layer `prefix` (its weight and bias) on x."""
    return g.linear(x, weights[f"{prefix}/weight"], weights[f"{prefix}/bias"])


def split(g: Graph, x: str, part: int, width: int) -> str:
    """The `part`-th block of `width` features of x [B, T, n*width]."""
    start, end = g.const(np.array([part * width])), g.const(np.array([(part + 1) * width]))
    return g.node("Slice", [x, start, end, g.const(np.array([2]))])


def cpu_has_vnni() -> bool:
    """Whether the CPU multiplies unsigned by signed bytes in one instruction (AVX-512 VNNI, AVX-VNNI or AMX), where
    onnxruntime's u8s8 kernels are exact and fastest; without it they saturate (Linux's CPU flags; elsewhere: no)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", flags) is not None


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc only): building the graphs leaves ~40 MB of freed,
    fragmented heap behind, which a long-running worker would otherwise keep."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory stays with the process, nothing else changes
        pass
