"""ASR with Moonshine tiny (ONNX, int8 weights): an alternative to Whisper tiny.en, chosen by
`MOODSTREAM_ASR_BACKEND=moonshine-tiny`.

Moonshine's encoder takes the utterance as it is (no 30 s window, no padding), so its cost follows the audio's
length; its decoder is greedy here. Trade measured with `moodstream bench asr --backend moonshine-tiny`: see the
README's Performance table and `models/asr/moonshine-tiny/MODEL_CARD.md`. The output contract is Whisper's
(`processors.transcriber.Transcription`), with the same guard against looping and invented text; Moonshine gives
no no-speech probability, so silence and noise are rejected on the decode's average log-probability alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.models import MODELS_DIR
from moodstream.processors.onnx import cpu_session
from moodstream.processors.transcriber import (
    SILENCE_PHRASES,
    PartialTranscription,
    Transcription,
    _as_float,
    compression_ratio,
    cut_at_self_repeat,
    spoken_words,
)
from moodstream.schemas.audio import SAMPLE_RATE

MODEL_DIR = MODELS_DIR / "asr" / "moonshine-tiny"
START, END = 1, 2
"""Moonshine's decoder start and end-of-text token ids."""
LAYERS, KV_HEADS, HEAD_DIM = 6, 8, 36
"""Moonshine tiny's decoder shape (the cache inputs of the merged decoder)."""


@dataclass(frozen=True)
class MoonshineOptions:
    """Moonshine ASR settings."""

    model_dir: Path = MODEL_DIR
    """Folder with encoder_model.onnx, decoder_model_merged.onnx and tokenizer.json."""
    threads: int = 1
    """onnxruntime threads per transcription (threads × worker processes should not exceed the cores)."""
    tokens_per_second: float = 6.5
    """Token budget per second of audio (Moonshine's tokens are longer than Whisper's)."""
    token_margin: int = 10
    """Tokens added to every budget."""
    min_audio_s: float = 0.1
    """Shorter audio is not decoded (Moonshine's lower limit)."""
    max_audio_s: float = 60.0
    """Longer audio is cut to this (Moonshine's upper limit is 64 s)."""
    log_prob_threshold: float = -1.2
    """A decode whose mean token log-probability is below this is taken for silence or noise and rejected."""
    compression_ratio_threshold: float = 2.4
    """Texts more repetitive than this (zlib ratio) are rejected."""
    silence_phrases: tuple[str, ...] = SILENCE_PHRASES
    """Phrases a decoder invents on silence or noise; rejected when they are the whole text and the model is unsure."""
    silence_phrase_log_prob: float = -0.5
    """A silence phrase is rejected when its mean token log-probability is under this."""


class MoonshineTranscriber:
    """Moonshine tiny on one utterance (float32 or int16 PCM at 16 kHz). One call at a time per instance."""

    def __init__(self, options: MoonshineOptions | None = None) -> None:
        import tokenizers

        self.options = options or MoonshineOptions()
        folder = self.options.model_dir
        self.encoder = cpu_session(folder / "encoder_model.onnx", self.options.threads)
        self.decoder = cpu_session(folder / "decoder_model_merged.onnx", self.options.threads)
        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.model_id = f"moonshine-tiny:{folder.name}" if folder != MODEL_DIR else "moonshine-tiny:int8"

    def _decode(self, audio: np.ndarray, budget: int) -> tuple[list[int], float]:
        """Token ids (without start and end) and their mean log-probability, greedy."""
        hidden = self.encoder.run(None, {"input_values": audio[None]})[0]
        empty = np.zeros((1, KV_HEADS, 0, HEAD_DIM), dtype=np.float32)
        cache = {
            f"past_key_values.{layer}.{side}.{kind}": empty
            for layer in range(LAYERS)
            for side in ("decoder", "encoder")
            for kind in ("key", "value")
        }
        tokens: list[int] = []
        log_probs: list[float] = []
        previous = START
        for step in range(budget):
            feeds = {
                "input_ids": np.array([[previous]], dtype=np.int64),
                "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]),
                **cache,
            }
            logits, *present = self.decoder.run(None, feeds)
            scores = logits[0, -1].astype(np.float64)
            previous = int(scores.argmax())
            log_probs.append(float(scores[previous] - scores.max() - np.log(np.exp(scores - scores.max()).sum())))
            if previous == END:
                break
            tokens.append(previous)
            # the encoder's cross-attention keys and values come once, from the first step
            for name, value in zip(cache, present, strict=True):
                if step == 0 or ".decoder." in name:
                    cache[name] = value
        return tokens, float(np.mean(log_probs)) if log_probs else -10.0

    def _audio(self, pcm: np.ndarray | bytes) -> np.ndarray:
        audio = _as_float(pcm)
        return np.ascontiguousarray(audio[: int(self.options.max_audio_s * SAMPLE_RATE)], dtype=np.float32)

    def _text(self, audio: np.ndarray) -> tuple[str, float, str]:
        """Text, mean log-probability and decode path ("greedy" or "greedy-cut") of one utterance."""
        o = self.options
        if len(audio) < o.min_audio_s * SAMPLE_RATE:
            return "", -10.0, "greedy"
        budget = int(o.token_margin + o.tokens_per_second * len(audio) / SAMPLE_RATE)
        tokens, avg_logprob = self._decode(audio, budget)
        cut = cut_at_self_repeat(tokens)
        path = "greedy" if cut is None else "greedy-cut"
        return self.tokenizer.decode(cut or tokens).strip(), avg_logprob, path

    def transcribe(self, pcm: np.ndarray | bytes, hurry: bool = False) -> Transcription:
        """The final transcript of an utterance; `hurry` changes nothing here (Moonshine decodes greedily always)."""
        started = time.perf_counter()
        audio = self._audio(pcm)
        text, avg_logprob, path = self._text(audio)
        ratio = compression_ratio(text)
        reason = self._reject_reason(text, avg_logprob, ratio)
        return Transcription(
            text="" if reason else text,
            rejected=reason is not None,
            reject_reason=reason,
            avg_logprob=round(avg_logprob, 4),
            no_speech_prob=0.0,
            compression_ratio=round(ratio, 3),
            path=path,
            window_s=round(len(audio) / SAMPLE_RATE, 2),
            compute_ms=round((time.perf_counter() - started) * 1000, 2),
            raw_text=text,
        )

    def transcribe_partial(self, pcm: np.ndarray | bytes, settled: str = "") -> PartialTranscription:
        """The words so far of an utterance still open; what the final's guard would reject comes back empty.
        `settled` is not used: Moonshine decodes every partial from the start."""
        started = time.perf_counter()
        text, avg_logprob, _path = self._text(self._audio(pcm))
        heard = self._reject_reason(text, avg_logprob, compression_ratio(text)) is None
        return PartialTranscription(
            text=text if heard else "", compute_ms=round((time.perf_counter() - started) * 1000, 2)
        )

    def _reject_reason(self, text: str, avg_logprob: float, ratio: float) -> str | None:
        o = self.options
        words = spoken_words(text)
        if not words or avg_logprob < o.log_prob_threshold:  # no no-speech probability: an unsure decode is none
            return "no_speech"
        if ratio > o.compression_ratio_threshold:
            return "repetition"
        if " ".join(words) in o.silence_phrases and avg_logprob < o.silence_phrase_log_prob:
            return "silence_phrase"
        return None
