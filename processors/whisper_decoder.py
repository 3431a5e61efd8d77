"""Whisper's decoder in onnxruntime, greedy or beam search: the same weights as CTranslate2's, cheaper where
CTranslate2 runs on oneDNN (CPUs other than Intel's; on MKL CTranslate2 is the faster one). Decision record 0007 has
the measurements.

There CTranslate2 runs every int8 product of a decoding step through oneDNN's general GEMM; onnxruntime's
`DynamicQuantizeMatMul` packs the weights once, when the session is made (`processors.whisper_graph` builds the
graphs from the CTranslate2 model folder). One decoding step feeds one token of each live sequence; the
self-attention keys and values of the tokens before it come back as outputs and go in again (the cache); the
cross-attention keys and values are computed once per utterance from the encoder's states and shared by every
sequence of a beam. A step is mostly the reading of its weights (the vocabulary projection above all), so a beam's
five rows cost far less than five greedy steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DecoderShape:
    """What the graphs are built for."""

    layers: int
    heads: int
    width: int
    vocabulary: int


def _decoder_layer(
    g: Graph, x: str, weights: dict[str, np.ndarray], i: int, shape: DecoderShape, causal: str | None = None
) -> tuple[str, str, str]:
    """Layer i on tokens x [B, T, W]: self-attention over past_k{i}/past_v{i} plus these tokens (`causal`, an
    additive [T, past + T] mask, keeps each token from the ones after it; one token needs none), attention over
    cross_k{i}/cross_v{i}, the feed-forward block; pre-norm with residuals, as Whisper's. Returns the layer's output
    and the grown keys and values."""
    p, head_dim = f"decoder/layer_{i}", shape.width // shape.heads
    qkv = dense(g, g.layer_norm(x, weights, f"{p}/self_attention/layer_norm"), weights, f"{p}/self_attention/linear_0")
    q, k, v = (g.heads(split(g, qkv, j, shape.width), shape.heads) for j in range(3))
    k_all = g.node("Concat", [f"past_k{i}", k], axis=2)
    v_all = g.node("Concat", [f"past_v{i}", v], axis=2)
    attended = g.attend(q, g.node("Transpose", [k_all], perm=[0, 1, 3, 2]), v_all, head_dim, causal)
    x = g.node("Add", [x, dense(g, attended, weights, f"{p}/self_attention/linear_1")])
    q = g.heads(
        dense(g, g.layer_norm(x, weights, f"{p}/attention/layer_norm"), weights, f"{p}/attention/linear_0"),
        shape.heads,
    )
    attended = g.attend(q, f"cross_k{i}", f"cross_v{i}", head_dim)
    x = g.node("Add", [x, dense(g, attended, weights, f"{p}/attention/linear_2")])
    up = dense(g, g.layer_norm(x, weights, f"{p}/ffn/layer_norm"), weights, f"{p}/ffn/linear_0")
    x = g.node("Add", [x, dense(g, g.node("Gelu", [up], domain="com.microsoft"), weights, f"{p}/ffn/linear_1")])
    return x, k_all, v_all


def _step_graph(weights: dict[str, np.ndarray], shape: DecoderShape, signed: bool, choose: bool = True) -> bytes:
    """One token of each of B sequences through the decoder: x [B, 1, W], the caches and the vocabulary mask -> the
    log-probabilities, the `k` likeliest tokens of each row with theirs, and the grown self-attention cache. Without
    `choose`, the graph that feeds tokens already given, all at once: x [B, T, W] and a causal mask [T, past + T] ->
    only the grown cache (per token, the vocabulary projection and the graph's call are most of a step's cost)."""
    from onnx import TensorProto, helper

    g = Graph(signed)
    head_dim = shape.width // shape.heads
    cache: list[str | int] = ["batch", shape.heads, "past", head_dim]
    inputs, x = [tensor("x", ["batch", 1 if choose else "tokens", shape.width])], "x"
    causal = None if choose else "causal"
    if causal:
        inputs.append(tensor(causal, ["tokens", "total"]))
    presents: dict[str, str] = {}
    for i in range(shape.layers):
        inputs += [tensor(f"past_k{i}", cache), tensor(f"past_v{i}", cache)]
        inputs += [tensor(f"cross_k{i}", ["batch", shape.heads, head_dim, "frames"])]
        inputs += [tensor(f"cross_v{i}", ["batch", shape.heads, "frames", head_dim])]
        x, presents[f"present_k{i}"], presents[f"present_v{i}"] = _decoder_layer(g, x, weights, i, shape, causal)
    caches = [tensor(name, ["batch", shape.heads, "total", head_dim]) for name in presents]
    if not choose:
        return g.model(inputs, caches, presents)
    last = g.node("Squeeze", [g.layer_norm(x, weights, "decoder/layer_norm"), g.const(np.array([1]))])
    logits = g.linear(last, weights["decoder/projection/weight"], None)
    inputs.append(tensor("mask", [shape.vocabulary]))
    inputs.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    logprobs = g.node("LogSoftmax", [g.node("Add", [logits, "mask"])], axis=-1)
    top_logprobs, top_tokens = g.name("top_logprobs"), g.name("top_tokens")
    g.nodes.append(helper.make_node("TopK", [logprobs, "k"], [top_logprobs, top_tokens], axis=-1))
    outputs_from = {"logprobs": logprobs, "top_tokens": top_tokens, "top_logprobs": top_logprobs, **presents}
    outputs = [
        tensor("logprobs", ["batch", shape.vocabulary]),
        helper.make_tensor_value_info("top_tokens", TensorProto.INT64, ["batch", "k"]),
        tensor("top_logprobs", ["batch", "k"]),
    ]
    return g.model(inputs, outputs + caches, outputs_from)


def _cross_graph(weights: dict[str, np.ndarray], shape: DecoderShape, signed: bool) -> bytes:
    """The encoder's states [B, S, W] -> every layer's cross-attention keys (transposed: [B, H, D, S], as the step
    multiplies by them every token) and values [B, H, S, D]."""
    g = Graph(signed)
    head_dim = shape.width // shape.heads
    outputs, outputs_from = [], {}
    for i in range(shape.layers):
        kv = dense(g, "states", weights, f"decoder/layer_{i}/attention/linear_1")
        keys, values = (g.heads(split(g, kv, j, shape.width), shape.heads) for j in range(2))
        outputs_from[f"cross_k{i}"] = g.node("Transpose", [keys], perm=[0, 1, 3, 2])
        outputs_from[f"cross_v{i}"] = values
        outputs.append(tensor(f"cross_k{i}", ["batch", shape.heads, head_dim, "frames"]))
        outputs.append(tensor(f"cross_v{i}", ["batch", shape.heads, "frames", head_dim]))
    return g.model([tensor("states", ["batch", "frames", shape.width])], outputs, outputs_from)


@dataclass(frozen=True)
class Decode:
    """One decode."""

    tokens: list[int]
    """The generated ids, end-of-text not included."""
    avg_logprob: float
    """Sum of the log-probabilities of the tokens and end-of-text, over their count (as faster-whisper reports it)."""
    no_speech_prob: float
    """Probability of the no-speech token right after start-of-transcript."""


@dataclass
class _Beam:
    """The live sequences of a beam search: their tokens and summed log-probabilities, one row of the caches each."""

    tokens: list[list[int]]
    logprob_sums: list[float]


def _per_token(scored: tuple[float, list[int]]) -> float:
    """A sequence's rank: its summed log-probability per token."""
    return scored[0] / max(1, len(scored[1]))


class WhisperDecoder:
    """Whisper's decoder in onnxruntime, greedy or beam search, on the encoder's states (CTranslate2's, or
    `whisper_encoder`'s). One call at a time."""

    def __init__(self, model_dir: Path, threads: int = 1, signed_weights: bool | None = None) -> None:
        """`signed_weights`: None chooses by the CPU (`cpu_has_vnni`)."""
        from moodstream.processors.onnx import cpu_session_from_bytes

        signed = cpu_has_vnni() if signed_weights is None else signed_weights
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
        step, feed = _step_graph(weights, self.shape, signed), _step_graph(weights, self.shape, signed, choose=False)
        self._step = cpu_session_from_bytes(step, threads, arena=False)
        self._feed = cpu_session_from_bytes(feed, threads, arena=False)
        self._cross = cpu_session_from_bytes(_cross_graph(weights, self.shape, signed), threads, arena=False)
        self._cross_names = [output.name for output in self._cross.get_outputs()]
        self._caches = [f"present_{kind}{i}" for i in range(self.shape.layers) for kind in "kv"]
        self._past = [f"past_{kind}{i}" for i in range(self.shape.layers) for kind in "kv"]
        self._feed_inputs = [f"{kind}{i}" for i in range(self.shape.layers) for kind in
                             ("past_k", "past_v", "cross_k", "cross_v")]  # fmt: skip
        return_freed_memory()

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
        beam_size: int = 1,
        stop_when: Callable[[list[int]], bool] | None = None,
        min_tokens: Callable[[float], int] | None = None,
    ) -> Decode:
        """The tokens after `prompt` and the `given` text tokens (a prefix taken as decoded: fed, not chosen) for
        encoder states [1, S, W], at most `budget` text tokens in all; timestamp tokens (from `first_timestamp_id` on)
        are never chosen. Greedy, or a beam search of `beam_size` sequences. The no-speech probability is read right
        after start-of-transcript, as without a prefix. `stop_when(given + tokens)`, asked after each greedy token,
        ends a greedy decode early (a loop that would run to the budget); the average log-probability is then over
        the tokens chosen. A greedy decode passes end-of-text over for the next likeliest token while fewer than
        `min_tokens(no-speech probability)` (the given ones included) are out."""
        crossed = self._cross.run(None, {"states": np.asarray(states, dtype=np.float32)})
        feeds = dict(zip(self._cross_names, crossed, strict=True))
        empty = np.zeros((1, self.shape.heads, 0, self.shape.width // self.shape.heads), np.float32)
        for i in range(self.shape.layers):
            feeds[f"past_k{i}"] = feeds[f"past_v{i}"] = empty
        masks = self._masks(first_timestamp_id)
        feeds["mask"] = masks["none"]
        top, logprobs = self._run(feeds, [prompt[0]], 0, 1, with_logprobs=True)
        no_speech = float(np.exp(logprobs[0, no_speech_id]))
        given = given or []
        sequence = [*prompt, *given]
        self._feed_given(feeds, sequence[1:-1], 1)
        if len(sequence) > 1:  # the first chosen token: no blank or end-of-text first unless a prefix came before
            feeds["mask"] = masks["rest"] if given else masks["first"]
            top, _ = self._run(feeds, [sequence[-1]], len(sequence) - 1, 2 * beam_size if beam_size > 1 else 2)
        feeds["mask"] = masks["rest"]
        last = min(len(prompt) + max(budget, len(given) + 1), self.max_tokens)
        if beam_size > 1:
            tokens, avg_logprob = self._beam_search(feeds, top, len(sequence), last, end_id, beam_size)
            return Decode(tokens, avg_logprob, no_speech)
        floor = min_tokens(no_speech) if min_tokens is not None else 0
        tokens, avg_logprob = self._greedy(feeds, top, len(sequence), last, end_id, given, stop_when, floor)
        return Decode(tokens, avg_logprob, no_speech)

    def _greedy(
        self, feeds: dict[str, np.ndarray], top: tuple[np.ndarray, np.ndarray], start: int, last: int, end_id: int,
        given: list[int], stop_when: Callable[[list[int]], bool] | None, min_tokens: int,
    ) -> tuple[list[int], float]:  # fmt: skip
        """Greedy from the first choice's `top` (each row's likeliest tokens first): the tokens and their average
        log-probability (end-of-text's, or the token the length ran out on, counted; not itself a token)."""
        tokens: list[int] = []
        logprob_sum = 0.0
        while True:
            passed_over = top[0][0, 0] == end_id and len(given) + len(tokens) < min_tokens and top[0].shape[1] > 1
            token, logprob = int(top[0][0, int(passed_over)]), float(top[1][0, int(passed_over)])
            logprob_sum += logprob
            if token == end_id or start + len(tokens) >= last:
                return tokens, logprob_sum / (len(tokens) + 1)
            tokens.append(token)
            if stop_when is not None and stop_when(given + tokens):
                return tokens, logprob_sum / (len(tokens) + 1)
            top, _ = self._run(feeds, [token], start + len(tokens) - 1, 2 if min_tokens else 1)

    def _beam_search(
        self, feeds: dict[str, np.ndarray], top: tuple[np.ndarray, np.ndarray], start: int, last: int, end_id: int,
        beam_size: int,
    ) -> tuple[list[int], float]:  # fmt: skip
        """Beam search from the first choice's `top` candidates (one row; the caches hold that row), by CTranslate2's
        rules: a step's `beam_size` likeliest candidates (summed log-probability) go on, those of them that end are
        set aside and replaced by the next likeliest that do not, until `beam_size` have ended or the length runs out;
        the one with the best log-probability per token wins (end-of-text's added, the token not counted)."""
        beam = _Beam([[]], [0.0])
        ended: list[tuple[float, list[int]]] = []
        position = start
        while True:
            closing = position + 1 >= last  # the rows grown now hold every token the length allows
            parents, beam = self._next_beam(beam, top, end_id, beam_size, ended, closing)
            if closing or len(ended) >= beam_size:
                break
            for name in self._past:
                feeds[name] = feeds[name][parents]
            top, _ = self._run(feeds, [row[-1] for row in beam.tokens], position, 2 * beam_size)
            position += 1
        best = max(ended, key=_per_token)
        return best[1], best[0] / (len(best[1]) + 1)

    @staticmethod
    def _next_beam(
        beam: _Beam, top: tuple[np.ndarray, np.ndarray], end_id: int, beam_size: int,
        ended: list[tuple[float, list[int]]], closing: bool,
    ) -> tuple[list[int], _Beam]:  # fmt: skip
        """The next beam from every live row's candidates: the `beam_size` likeliest, an ending one set aside in
        `ended` and replaced by the likeliest after them that does not end (`closing`: each is set aside as it is),
        with the rows they grow from."""
        tokens, logprobs = top
        candidates = sorted(
            ((beam.logprob_sums[row] + float(logprobs[row, j]), row, int(tokens[row, j]))
             for row in range(len(beam.tokens)) for j in range(tokens.shape[1])),
            reverse=True,
        )[: 2 * beam_size]  # fmt: skip
        spare = iter([candidate for candidate in candidates[beam_size:] if candidate[2] != end_id])
        parents: list[int] = []
        grown = _Beam([], [])
        for candidate in candidates[:beam_size]:
            total, row, token = candidate
            if token == end_id or closing:
                ended.append((total, beam.tokens[row] + ([] if token == end_id else [token])))
                if closing or (replacement := next(spare, None)) is None:
                    continue
                total, row, token = replacement
            parents.append(row)
            grown.tokens.append([*beam.tokens[row], token])
            grown.logprob_sums.append(total)
        return parents, grown

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
        self, feeds: dict[str, np.ndarray], tokens: list[int], position: int, k: int, with_logprobs: bool = False
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
        """Feed one token of each row at `position`: each row's `k` likeliest next tokens and their log-probabilities
        ([rows, k] each), and (when asked) all the log-probabilities."""
        feeds["x"] = (self._embeddings[tokens].astype(np.float32) + self._positions[position])[:, None]
        feeds["k"] = np.array([k], np.int64)
        names = ["top_tokens", "top_logprobs", *(["logprobs"] if with_logprobs else []), *self._caches]
        results = self._step.run(names, feeds)
        caches = results[3:] if with_logprobs else results[2:]
        for i in range(self.shape.layers):
            feeds[f"past_k{i}"], feeds[f"past_v{i}"] = caches[2 * i], caches[2 * i + 1]
        return (results[0], results[1]), results[2] if with_logprobs else None
