"""Streaming endpointer: per-session speech detection, utterance cutting and acoustic windows.

Feed int16 PCM frames in session order; get events back: speech start, provisional acoustic windows while speech is
active, and finished utterances (speech boundaries in session time, PCM with padding). Pure: no Kafka, no asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moodstream.processors.vad import WINDOW, SileroStream
from moodstream.schemas.audio import ms_to_samples, samples_to_ms


@dataclass(frozen=True)
class EndpointerOptions:
    """Endpointing parameters (defaults measured with `moodstream bench vad`)."""

    start_threshold: float = 0.5
    """Speech probability at or above which a window counts as speech."""
    stop_threshold: float = 0.35
    """Probability below which a window counts as silence (hysteresis: between the two, the state holds)."""
    min_speech_ms: int = 160
    """Speech must last this long before an utterance starts (drops clicks and blips)."""
    min_silence_ms: int = 500
    """Trailing silence that ends an utterance."""
    speech_pad_ms: int = 200
    """Audio kept before the detected start and after the detected end in the utterance PCM (helps ASR)."""
    max_utterance_ms: int = 15_000
    """Longer speech is cut at the quietest point of its last `cut_search_ms`."""
    cut_search_ms: int = 3_000
    """How far back from the limit to look for the quietest cut point."""
    acoustic_window_ms: int = 500
    """Length of (and interval between) provisional acoustic windows while speech is active; 0 disables them."""
    partial_interval_ms: int = 1_000
    """While an utterance is open, its new audio is handed out this often (for partial transcripts); 0: never."""
    min_utterance_ms: int = 250
    """Anti-hallucination gate: shorter utterances are not sent to ASR."""
    min_rms_dbfs: float = -55.0
    """Anti-hallucination gate: utterances quieter than this are not sent to ASR."""


@dataclass(frozen=True)
class SpeechStart:
    start_sample: int
    utterance_seq: int


@dataclass(frozen=True)
class AcousticChunk:
    utterance_seq: int
    window_seq: int
    start_sample: int
    pcm: bytes


@dataclass(frozen=True)
class SpeechSoFar:
    """New audio of the open utterance: chunks ``0, 1, …`` are consecutive from the utterance's padded start."""

    utterance_seq: int
    chunk_seq: int
    start_sample: int
    speech_start_sample: int
    pcm: bytes


@dataclass(frozen=True)
class UtteranceCut:
    """A finished utterance. ``start_sample``/``end_sample`` are the speech boundaries; ``pcm`` adds padding."""

    utterance_seq: int
    start_sample: int
    end_sample: int
    pcm_start_sample: int
    pcm: bytes
    reason: str
    """"silence", "max_length" or "session_end"."""
    gated: str | None = None
    """Why the anti-hallucination gate keeps it from ASR ("too_short", "too_quiet"), or None."""


Event = SpeechStart | AcousticChunk | SpeechSoFar | UtteranceCut


@dataclass
class _Buffer:
    """Preallocated int16 ring of recent session audio addressed by absolute sample index."""

    capacity: int
    data: np.ndarray = field(init=False)
    end: int = 0  # absolute index one past the newest sample

    def __post_init__(self) -> None:
        self.data = np.zeros(self.capacity, dtype=np.int16)

    @property
    def start(self) -> int:
        return max(0, self.end - self.capacity)

    def append(self, samples: np.ndarray) -> None:
        if len(samples) > self.capacity:
            self.end += len(samples) - self.capacity
            samples = samples[-self.capacity :]
        pos = self.end % self.capacity
        first = min(len(samples), self.capacity - pos)
        self.data[pos : pos + first] = samples[:first]
        self.data[: len(samples) - first] = samples[first:]
        self.end += len(samples)

    def slice(self, start: int, end: int) -> np.ndarray:
        start = max(start, self.start)
        end = min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        a, b = start % self.capacity, end % self.capacity
        if a < b or end - start == 0:
            return self.data[a:b].copy()
        return np.concatenate((self.data[a:], self.data[:b]))


class Endpointer:
    """One session's endpointing state. Call :meth:`feed` with consecutive frames, :meth:`flush` at session end."""

    def __init__(
        self, vad: SileroStream, options: EndpointerOptions | None = None, next_utterance_seq: int = 0
    ) -> None:
        self.vad = vad
        self.options = options or EndpointerOptions()
        o = self.options
        self._min_speech = ms_to_samples(o.min_speech_ms)
        self._min_silence = ms_to_samples(o.min_silence_ms)
        self._pad = ms_to_samples(o.speech_pad_ms)
        self._max_utt = ms_to_samples(o.max_utterance_ms)
        self._search = ms_to_samples(o.cut_search_ms)
        self._acoustic = ms_to_samples(o.acoustic_window_ms)
        self._partial_interval = ms_to_samples(o.partial_interval_ms)
        self._buffer = _Buffer(self._max_utt + 2 * self._pad + ms_to_samples(2_000))
        self.next_utterance_seq = next_utterance_seq
        self.reset()

    def reset(self, at_sample: int = 0) -> None:
        """Forget everything about the stream; the next sample fed is at ``at_sample`` of session time."""
        self.vad.reset()
        self._buffer.end = at_sample
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_start = at_sample
        self._triggered = False
        self._run_start: int | None = None  # first sample of the current run of speech windows (not yet triggered)
        self._speech_start = 0
        self._silence_start: int | None = None
        self._next_acoustic = 0
        self._window_seq = 0
        self._partial_from = 0  # first sample of the open utterance not yet handed out as SpeechSoFar
        self._chunk_seq = 0
        self._quiet: list[tuple[int, float]] = []  # (window start, energy) of the open utterance

    @property
    def open_since(self) -> int | None:
        """First sample the open utterance needs (with padding), or None when no utterance is open."""
        if self._triggered:
            return max(0, self._speech_start - self._pad)
        if self._run_start is not None:
            return max(0, self._run_start - self._pad)
        return None

    @property
    def position(self) -> int:
        """Session sample index one past the last sample fed."""
        return self._buffer.end

    def feed(self, pcm: bytes, start_sample: int) -> list[Event]:
        """Add a frame of int16 PCM starting at ``start_sample``; returns the events it completes."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if start_sample != self._buffer.end:
            if start_sample < self._buffer.end:  # a replayed frame already processed
                skip = self._buffer.end - start_sample
                samples = samples[skip:]
                start_sample += skip
                if not len(samples):
                    return []
            else:  # a gap (lost frames): close what is open and restart cleanly at the new position
                events = self.flush("silence")
                self.reset(start_sample)
                return events + self.feed(samples.tobytes(), start_sample)
        self._buffer.append(samples)
        pending = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        whole = len(pending) // WINDOW * WINDOW
        self._pending = pending[whole:].copy()
        if not whole:
            return []
        windows = pending[:whole].reshape(-1, WINDOW)
        first = self._pending_start
        self._pending_start += whole
        probs = self.vad(windows)
        energies = np.einsum("ij,ij->i", windows.astype(np.float32), windows.astype(np.float32)) / WINDOW
        events: list[Event] = []
        for i, prob in enumerate(probs):
            events.extend(self._step(first + i * WINDOW, float(prob), float(energies[i])))
        return events

    def _step(self, start: int, prob: float, energy: float) -> list[Event]:
        o = self.options
        end = start + WINDOW
        events: list[Event] = []
        if not self._triggered:
            if prob >= o.start_threshold:
                if self._run_start is None:
                    self._run_start = start
                if end - self._run_start >= self._min_speech:
                    self._triggered = True
                    self._speech_start = self._run_start
                    self._run_start = None
                    self._silence_start = None
                    self._opened(self._speech_start)
                    events.append(SpeechStart(self._speech_start, self.next_utterance_seq))
            elif prob < o.stop_threshold:
                self._run_start = None
            return events
        self._quiet.append((start, energy))
        if prob >= o.stop_threshold:
            if prob >= o.start_threshold or self._silence_start is None:
                self._silence_start = None
        elif self._silence_start is None:
            self._silence_start = start
        if self._acoustic and end >= self._next_acoustic and self._silence_start is None:
            chunk = self._buffer.slice(end - self._acoustic, end)
            events.append(
                AcousticChunk(self.next_utterance_seq, self._window_seq, end - self._acoustic, chunk.tobytes())
            )
            self._window_seq += 1
            self._next_acoustic = end + self._acoustic
        pause = self._silence_start is not None  # a pause may end the utterance: its final is near
        if self._partial_interval and not pause and end - self._partial_from >= self._partial_interval:
            events.append(self._speech_so_far(end))
        if self._silence_start is not None and end - self._silence_start >= self._min_silence:
            events.append(self._cut(self._silence_start, "silence"))
            self._triggered = False
        elif end - self._speech_start >= self._max_utt:
            cut = self._quietest(end)
            events.append(self._cut(cut, "max_length"))
            # the speech goes on: a new utterance starts at the cut
            self._triggered = True
            self._opened(cut)
            events.append(SpeechStart(cut, self.next_utterance_seq))
        return events

    def _opened(self, speech_start: int) -> None:
        """A new utterance opens with its speech at ``speech_start``."""
        self._speech_start = speech_start
        self._silence_start = None
        self._next_acoustic = speech_start + self._acoustic
        self._window_seq = 0
        self._quiet = []
        self._partial_from = max(speech_start - self._pad, self._buffer.start)
        self._chunk_seq = 0

    def _speech_so_far(self, end: int) -> SpeechSoFar:
        chunk = self._buffer.slice(self._partial_from, end)
        event = SpeechSoFar(self.next_utterance_seq, self._chunk_seq, self._partial_from, self._speech_start,
                            chunk.tobytes())  # fmt: skip
        self._partial_from, self._chunk_seq = end, self._chunk_seq + 1
        return event

    def _quietest(self, end: int) -> int:
        lo = end - self._search
        candidates = [(e, s) for s, e in self._quiet if s >= lo and s > self._speech_start]
        if not candidates:
            return end
        _energy, start = min(candidates)
        return start + WINDOW // 2

    def _cut(self, end: int, reason: str) -> UtteranceCut:
        o = self.options
        start = self._speech_start
        pcm_start = max(start - self._pad, self._buffer.start)
        pcm_end = min(end + self._pad, self._buffer.end) if reason == "silence" else end
        pcm = self._buffer.slice(pcm_start, pcm_end)
        gated = None
        if samples_to_ms(end - start) < o.min_utterance_ms:
            gated = "too_short"
        else:
            speech = self._buffer.slice(start, end).astype(np.float64)
            rms = float(np.sqrt(np.mean(speech * speech))) if len(speech) else 0.0
            if rms <= 0 or 20 * np.log10(rms / 32768.0) < o.min_rms_dbfs:
                gated = "too_quiet"
        cut = UtteranceCut(self.next_utterance_seq, start, end, pcm_start, pcm.tobytes(), reason, gated)
        self.next_utterance_seq += 1
        self._quiet = []
        return cut

    def flush(self, reason: str = "session_end") -> list[Event]:
        """End of stream: close the open utterance, if any (its end is the last sample fed)."""
        if not self._triggered:
            self._run_start = None
            return []
        self._triggered = False
        return [self._cut(self._buffer.end, reason)]
