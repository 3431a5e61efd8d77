"""Partial transcripts as a pure state machine: the open utterances' audio chunks in; when a partial decode is due,
what to decode (the audio so far); the decoded text in, the partial to send out.
No Kafka, no model: the ASR stage shell (`stages/asr.py`) decides whether the worker has time and runs the decoder.

Invariants:
- Partials are disposable. A missing chunk makes the utterance's audio unusable, so its partials stop (the final
  still comes); a repeated chunk is ignored. Nothing here is acknowledged late or checkpointed.
- No partial of an utterance is produced once its final utterance reached the ASR stage (`finished`), and a partial
  that repeats the previous text is not produced at all.
- Memory is bounded: one open utterance per session channel (a call's parties speak at once), at most
  `max_sessions` of them (least recently heard dropped).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from moodstream.schemas.audio import ms_to_samples
from moodstream.schemas.records import PartialAudio, PartialTranscript


@dataclass(frozen=True)
class PartialOptions:
    """When partial transcripts are decoded, and how much state is kept for them."""

    min_new_audio_ms: int = 900
    """A partial is due once the open utterance has this much audio more than the last decode heard."""
    max_lag_ms: float = 1_500
    """A chunk that reaches the stage this long after its audio arrived at the gateway is kept but not decoded:
    a partial that late is not live any more (the stage is behind; it catches up on the next chunk)."""
    max_sessions: int = 512
    """Sessions whose open utterance is kept; beyond it the least recently heard is forgotten."""
    unsettled_words: int | None = 1
    """Of the words the last two decodes agree on from the utterance's start, the last ones that the next decode
    still hears again; the words before them are settled: the decoder is given them, not asked for them again.
    None: every partial is decoded from the utterance's start."""


@dataclass(frozen=True)
class PartialDecode:
    """A partial that is due: decode `pcm` (the utterance from its padded start)."""

    session_id: str
    utterance_seq: int
    pcm: bytes
    start_ms: float
    end_ms: float
    channel: int = 0
    role: str | None = None
    settled: str = ""
    """The words the previous partial heard at the start of this audio that stand (`unsettled_words`)."""


Speaker = tuple[str, int]
"""A session and one of its channels: each has its own open utterance."""


@dataclass
class _Open:
    """One session's open utterance."""

    utterance_seq: int
    speech_start_ms: float
    role: str | None = None
    next_chunk: int = 0
    audio: bytearray = field(default_factory=bytearray)
    end_ms: float = 0.0
    decoded_samples: int = 0
    text: str = ""
    revision: int = 0
    heard: tuple[str, ...] = ()
    """The last two decodes' texts (a repeat included): the words both start with are settled."""
    broken: bool = False
    """A chunk went missing: no more partials for this utterance."""


class PartialTracker:
    """The ASR stage's partial-transcript state for all of its sessions."""

    def __init__(self, options: PartialOptions | None = None) -> None:
        self.options = options or PartialOptions()
        self._open: collections.OrderedDict[Speaker, _Open] = collections.OrderedDict()
        self._finished: collections.OrderedDict[Speaker, int] = collections.OrderedDict()
        """(session id, channel) → the highest utterance seq whose final reached the stage."""

    def on_chunk(self, chunk: PartialAudio, now_ms: float) -> PartialDecode | None:
        """Take one chunk (at wall clock `now_ms`); returns the decode that is now due, if any."""
        speaker, seq = (chunk.session_id, chunk.channel), chunk.utterance_seq
        if self._finished.get(speaker, -1) >= seq:
            return None
        state = self._open.get(speaker)
        if state is None or state.utterance_seq < seq:
            if chunk.chunk_seq != 0:  # joined mid-utterance (a takeover, a lost chunk): wait for the next one
                return None
            state = _Open(seq, chunk.speech_start_ms, chunk.role)
        elif state.utterance_seq > seq or chunk.chunk_seq < state.next_chunk:
            return None  # an older utterance's chunk, or a repeat
        self._remember(speaker, state)
        if chunk.chunk_seq > state.next_chunk:
            state.broken = True
        if state.broken:
            return None
        state.audio += chunk.pcm
        state.next_chunk, state.end_ms = chunk.chunk_seq + 1, chunk.end_ms
        return self.due(*speaker) if now_ms - chunk.received_at_ms <= self.options.max_lag_ms else None

    def due(self, session_id: str, channel: int = 0) -> PartialDecode | None:
        """The decode the session channel's open utterance is waiting for (None: none is due)."""
        state = self._open.get((session_id, channel))
        if state is None or state.broken:
            return None
        samples = len(state.audio) // 2
        if samples - state.decoded_samples < ms_to_samples(self.options.min_new_audio_ms):
            return None
        audio = bytes(state.audio)
        return PartialDecode(session_id, state.utterance_seq, audio, state.speech_start_ms, state.end_ms, channel,
                             state.role, self._settled(state.heard))  # fmt: skip

    def _settled(self, heard: tuple[str, ...]) -> str:
        keep_back = self.options.unsettled_words
        if keep_back is None or len(heard) < 2:
            return ""
        before, last = heard[0].split(), heard[1].split()
        agreed = 0
        while agreed < min(len(before), len(last)) and before[agreed] == last[agreed]:
            agreed += 1
        return " ".join(last[: max(0, agreed - keep_back)])

    def on_decoded(
        self, decode: PartialDecode, text: str, model_id: str, compute_ms: float
    ) -> PartialTranscript | None:
        """Record what the decoder heard; returns the partial to send, or None when it adds nothing or is stale."""
        state = self._open.get((decode.session_id, decode.channel))
        if state is None or state.utterance_seq != decode.utterance_seq:
            return None
        state.decoded_samples = len(decode.pcm) // 2
        text = text.strip()
        if text:
            state.heard = (*state.heard[-1:], text)
        if not text or text == state.text:
            return None
        state.text, state.revision = text, state.revision + 1
        return PartialTranscript(
            session_id=decode.session_id,
            utterance_seq=decode.utterance_seq,
            revision=state.revision,
            start_ms=decode.start_ms,
            end_ms=decode.end_ms,
            text=text,
            model_id=model_id,
            compute_ms=compute_ms,
            channel=decode.channel,
            role=decode.role,
        )

    def finished(self, session_id: str, utterance_seq: int, channel: int = 0) -> None:
        """The utterance's final reached the stage: no partial of it (or of an earlier one of its channel) from now
        on."""
        speaker = (session_id, channel)
        if self._finished.get(speaker, -1) < utterance_seq:
            self._finished[speaker] = utterance_seq
        self._finished.move_to_end(speaker)
        while len(self._finished) > self.options.max_sessions:
            self._finished.popitem(last=False)
        state = self._open.get(speaker)
        if state is not None and state.utterance_seq <= utterance_seq:
            del self._open[speaker]

    def _remember(self, speaker: Speaker, state: _Open) -> None:
        self._open[speaker] = state
        self._open.move_to_end(speaker)
        while len(self._open) > self.options.max_sessions:
            self._open.popitem(last=False)

    def __len__(self) -> int:
        return len(self._open)
