"""Whisper's decoder in onnxruntime, for greedy decoding: the same weights as CTranslate2's, about a quarter less
CPU per decode where CTranslate2 runs on oneDNN (CPUs other than Intel's; on MKL CTranslate2 is the faster one).

There CTranslate2 runs every int8 product of a decoding step (one row) through oneDNN's general GEMM; onnxruntime's
`DynamicQuantizeMatMul` packs the weights once, when the session is made. Decision record 0007 has the measurements.

The graphs are built in memory from the CTranslate2 model folder when the decoder is made: nothing is written to
disk and nothing is fetched. One decoding step feeds one token; the self-attention keys and values of the tokens
before it come back as outputs and go in again (the cache); the cross-attention keys and values are computed once
per utterance from the encoder's states. Weights are quantized to 8 bits per output channel, symmetric around zero
as CTranslate2's int8 are, stored unsigned around 128; activations are quantized per call by the operator.
"""

from __future__ import annotations

import ctypes
import json
import re
import struct
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DecoderShape:
    """What the graphs are built for."""

    layers: int
    heads: int
    width: int
    vocabulary: int


class _Graph:
    """A small ONNX graph builder: initializers, nodes, and int8 linear layers."""

    def __init__(self) -> None:
        from onnx import numpy_helper

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
        # unsigned weights around a zero point of 128: signed int8 weights take onnxruntime's u8s8 kernels, which
        # saturate on AVX2 CPUs without VNNI (+1.3 WER points on the long read set)
        shifted = (np.clip(np.round(matrix / scale), -127, 127) + 128).astype(np.uint8)
        zero_points = np.full(matrix.shape[1], 128, np.uint8)
        inputs = [x, self.const(shifted, "w"), self.const(scale.astype(np.float32), "s"), self.const(zero_points, "z")]
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
        graph = helper.make_graph(self.nodes, "whisper_decoder", inputs, outputs, self.initializers)
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _tensor(name: str, dims: list[str | int]) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _dense(g: _Graph, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
    """The linear layer `prefix` (its weight and bias) on x."""
    return g.linear(x, weights[f"{prefix}/weight"], weights[f"{prefix}/bias"])


def _split(g: _Graph, x: str, part: int, width: int) -> str:
    """The `part`-th block of `width` features of x [B, T, n*width]."""
    start, end = g.const(np.array([part * width])), g.const(np.array([(part + 1) * width]))
    return g.node("Slice", [x, start, end, g.const(np.array([2]))])


def _decoder_layer(
    g: _Graph, x: str, weights: dict[str, np.ndarray], i: int, shape: DecoderShape, causal: str | None = None
) -> tuple[str, str, str]:
    """Layer i on tokens x [B, T, W]: self-attention over past_k{i}/past_v{i} plus these tokens (`causal`, an
    additive [T, past + T] mask, keeps each token from the ones after it; one token needs none), attention over
    cross_k{i}/cross_v{i}, the feed-forward block; pre-norm with residuals, as Whisper's. Returns the layer's output
    and the grown keys and values."""
    p, head_dim = f"decoder/layer_{i}", shape.width // shape.heads
    qkv = _dense(g, g.layer_norm(x, weights, f"{p}/self_attention/layer_norm"), weights, f"{p}/self_attention/linear_0")
    q, k, v = (g.heads(_split(g, qkv, j, shape.width), shape.heads) for j in range(3))
    k_all = g.node("Concat", [f"past_k{i}", k], axis=2)
    v_all = g.node("Concat", [f"past_v{i}", v], axis=2)
    attended = g.attend(q, g.node("Transpose", [k_all], perm=[0, 1, 3, 2]), v_all, head_dim, causal)
    x = g.node("Add", [x, _dense(g, attended, weights, f"{p}/self_attention/linear_1")])
    q = g.heads(
        _dense(g, g.layer_norm(x, weights, f"{p}/attention/layer_norm"), weights, f"{p}/attention/linear_0"),
        shape.heads,
    )
    attended = g.attend(q, f"cross_k{i}", f"cross_v{i}", head_dim)
    x = g.node("Add", [x, _dense(g, attended, weights, f"{p}/attention/linear_2")])
    up = _dense(g, g.layer_norm(x, weights, f"{p}/ffn/layer_norm"), weights, f"{p}/ffn/linear_0")
    x = g.node("Add", [x, _dense(g, g.node("Gelu", [up], domain="com.microsoft"), weights, f"{p}/ffn/linear_1")])
    return x, k_all, v_all


def _step_graph(weights: dict[str, np.ndarray], shape: DecoderShape, choose: bool = True) -> bytes:
    """One token through the decoder: x [B, 1, W], the caches and the vocabulary mask -> the log-probabilities, the
    chosen token and its log-probability, and the grown self-attention cache. Without `choose`, the graph that feeds
    tokens already given, all at once: x [B, T, W] and a causal mask [T, past + T] -> only the grown cache (per
    token, the vocabulary projection and the graph's call are most of a step's cost)."""
    from onnx import TensorProto, helper

    g = _Graph()
    head_dim = shape.width // shape.heads
    cache: list[str | int] = ["batch", shape.heads, "past", head_dim]
    inputs, x = [_tensor("x", ["batch", 1 if choose else "tokens", shape.width])], "x"
    causal = None if choose else "causal"
    if causal:
        inputs.append(_tensor(causal, ["tokens", "total"]))
    presents: dict[str, str] = {}
    for i in range(shape.layers):
        inputs += [_tensor(f"past_k{i}", cache), _tensor(f"past_v{i}", cache)]
        inputs += [_tensor(f"cross_k{i}", ["batch", shape.heads, head_dim, "frames"])]
        inputs += [_tensor(f"cross_v{i}", ["batch", shape.heads, "frames", head_dim])]
        x, presents[f"present_k{i}"], presents[f"present_v{i}"] = _decoder_layer(g, x, weights, i, shape, causal)
    caches = [_tensor(name, ["batch", shape.heads, "total", head_dim]) for name in presents]
    if not choose:
        return g.model(inputs, caches, presents)
    last = g.node("Squeeze", [g.layer_norm(x, weights, "decoder/layer_norm"), g.const(np.array([1]))])
    logits = g.linear(last, weights["decoder/projection/weight"], None)
    inputs.append(_tensor("mask", [shape.vocabulary]))
    logprobs = g.node("LogSoftmax", [g.node("Add", [logits, "mask"])], axis=-1)
    outputs_from = {
        "logprobs": logprobs,
        "token": g.node("ArgMax", [logprobs], axis=-1, keepdims=1),
        "token_logprob": g.node("ReduceMax", [logprobs], axes=[-1], keepdims=1),
        **presents,
    }
    outputs = [
        _tensor("logprobs", ["batch", shape.vocabulary]),
        helper.make_tensor_value_info("token", TensorProto.INT64, ["batch", 1]),
        _tensor("token_logprob", ["batch", 1]),
    ]
    return g.model(inputs, outputs + caches, outputs_from)


def _cross_graph(weights: dict[str, np.ndarray], shape: DecoderShape) -> bytes:
    """The encoder's states [B, S, W] -> every layer's cross-attention keys (transposed: [B, H, D, S], as the step
    multiplies by them every token) and values [B, H, S, D]."""
    g = _Graph()
    head_dim = shape.width // shape.heads
    outputs, outputs_from = [], {}
    for i in range(shape.layers):
        kv = _dense(g, "states", weights, f"decoder/layer_{i}/attention/linear_1")
        keys, values = (g.heads(_split(g, kv, j, shape.width), shape.heads) for j in range(2))
        outputs_from[f"cross_k{i}"] = g.node("Transpose", [keys], perm=[0, 1, 3, 2])
        outputs_from[f"cross_v{i}"] = values
        outputs.append(_tensor(f"cross_k{i}", ["batch", shape.heads, head_dim, "frames"]))
        outputs.append(_tensor(f"cross_v{i}", ["batch", shape.heads, "frames", head_dim]))
    return g.model([_tensor("states", ["batch", "frames", shape.width])], outputs, outputs_from)


def _return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc only): building the graphs leaves ~40 MB of freed,
    fragmented heap behind, which a long-running worker would otherwise keep."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory stays with the process, nothing else changes
        pass


@dataclass(frozen=True)
class GreedyDecode:
    """One greedy decode."""

    tokens: list[int]
    """The generated ids, end-of-text not included."""
    avg_logprob: float
    """Sum of the log-probabilities of the tokens and end-of-text, over their count (as faster-whisper reports it)."""
    no_speech_prob: float
    """Probability of the no-speech token right after start-of-transcript."""


class WhisperGreedyDecoder:
    """Greedy decoding of Whisper's decoder in onnxruntime, on encoder states from CTranslate2. One call at a time."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        from moodstream.processors.onnx import cpu_session_from_bytes

        weights = read_ct2_variables(model_dir / "model.bin")
        config = json.loads((model_dir / "config.json").read_text())
        embeddings = weights["decoder/embeddings/weight"]
        self.shape = DecoderShape(
            layers=sum(1 for name in weights if re.fullmatch(r"decoder/layer_\d+/ffn/linear_0/weight", name)),
            heads=int(weights["decoder/num_heads"]),
            width=embeddings.shape[1],
            vocabulary=embeddings.shape[0],
        )
        self._embeddings = embeddings.copy()  # a copy: the mapped model file is let go
        self._positions = weights["decoder/position_encodings/encodings"].astype(np.float32)
        self._suppress = np.array(config["suppress_ids"], dtype=np.int64)
        self._suppress_begin = np.array(config["suppress_ids_begin"], dtype=np.int64)
        self._step = cpu_session_from_bytes(_step_graph(weights, self.shape), threads, arena=False)
        self._feed = cpu_session_from_bytes(_step_graph(weights, self.shape, choose=False), threads, arena=False)
        self._cross = cpu_session_from_bytes(_cross_graph(weights, self.shape), threads, arena=False)
        self._cross_names = [output.name for output in self._cross.get_outputs()]
        caches = [f"present_{kind}{i}" for i in range(self.shape.layers) for kind in "kv"]
        self._step_outputs = ["token", "token_logprob", "token_logprob", *caches]
        self._step_outputs_with_logprobs = ["token", "token_logprob", "logprobs", *caches]
        self._feed_inputs = [f"{kind}{i}" for i in range(self.shape.layers) for kind in
                             ("past_k", "past_v", "cross_k", "cross_v")]  # fmt: skip
        _return_freed_memory()

    @property
    def max_tokens(self) -> int:
        """Positions the decoder has (prompt included)."""
        return len(self._positions)

    def decode(
        self,
        states: np.ndarray,
        prompt: list[int],
        budget: int,
        no_speech_id: int,
        end_id: int,
        first_timestamp_id: int | None = None,
        given: list[int] | None = None,
    ) -> GreedyDecode:
        """Greedy tokens after `prompt` and the `given` text tokens (a prefix taken as decoded: fed, not chosen) for
        encoder states [1, S, W], at most `budget` text tokens in all; timestamp tokens (from `first_timestamp_id` on)
        are never chosen. The no-speech probability is read right after start-of-transcript, as without a prefix."""
        crossed = self._cross.run(None, {"states": np.asarray(states, dtype=np.float32)})
        feeds = dict(zip(self._cross_names, crossed, strict=True))
        empty = np.zeros((1, self.shape.heads, 0, self.shape.width // self.shape.heads), np.float32)
        for i in range(self.shape.layers):
            feeds[f"past_k{i}"] = feeds[f"past_v{i}"] = empty
        masks = self._masks(first_timestamp_id)
        feeds["mask"] = masks["none"]
        token, logprob, logprobs = self._run(feeds, prompt[0], 0, with_logprobs=True)
        no_speech = float(np.exp(logprobs[0, no_speech_id]))
        given = given or []
        sequence = [*prompt, *given]
        self._feed_given(feeds, sequence[1:-1], 1)
        if len(sequence) > 1:  # the first chosen token: no blank or end-of-text first unless a prefix came before
            feeds["mask"] = masks["rest"] if given else masks["first"]
            token, logprob, _ = self._run(feeds, sequence[-1], len(sequence) - 1)
        tokens: list[int] = []
        logprob_sum = logprob
        feeds["mask"] = masks["rest"]
        last = min(len(prompt) + max(budget, len(given) + 1), self.max_tokens)
        while token != end_id and len(sequence) + len(tokens) < last:
            tokens.append(token)
            token, logprob, _ = self._run(feeds, token, len(sequence) + len(tokens) - 1)
            logprob_sum += logprob
        return GreedyDecode(tokens, logprob_sum / (len(tokens) + 1), no_speech)

    def _masks(self, first_timestamp_id: int | None) -> dict[str, np.ndarray]:
        """Added to the logits: 0 where a token may be chosen, -inf where not."""
        none = np.zeros(self.shape.vocabulary, np.float32)
        rest = none.copy()
        rest[self._suppress] = -np.inf
        if first_timestamp_id is not None:
            rest[first_timestamp_id:] = -np.inf
        first = rest.copy()
        first[self._suppress_begin] = -np.inf
        return {"none": none, "first": first, "rest": rest}

    def _feed_given(self, feeds: dict[str, np.ndarray], tokens: list[int], position: int) -> None:
        """Feed tokens that are given, not chosen, from `position` on, in one call: only the caches grow."""
        if not tokens:
            return
        count = len(tokens)
        given = {name: feeds[name] for name in self._feed_inputs}
        given["x"] = (self._embeddings[tokens].astype(np.float32) + self._positions[position : position + count])[None]
        given["causal"] = np.triu(np.full((count, position + count), -np.inf, np.float32), k=position + 1)
        results = self._feed.run(None, given)
        for i in range(self.shape.layers):
            feeds[f"past_k{i}"], feeds[f"past_v{i}"] = results[2 * i], results[2 * i + 1]

    def _run(
        self, feeds: dict[str, np.ndarray], token: int, position: int, with_logprobs: bool = False
    ) -> tuple[int, float, np.ndarray | None]:
        """Feed one token at `position`: the next token chosen, its log-probability, and (when asked) all of them."""
        feeds["x"] = (self._embeddings[token].astype(np.float32) + self._positions[position])[None, None]
        names = self._step_outputs_with_logprobs if with_logprobs else self._step_outputs
        results = self._step.run(names, feeds)
        for i in range(self.shape.layers):
            feeds[f"past_k{i}"], feeds[f"past_v{i}"] = results[3 + 2 * i], results[4 + 2 * i]
        return int(results[0][0, 0]), float(results[1][0, 0]), results[2] if with_logprobs else None
