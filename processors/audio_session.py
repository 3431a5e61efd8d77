"""One session's audio stage as a pure state machine: frames and control records in; the records to send, the
checkpoint to keep and the input records that may be acknowledged out. No Kafka: the stage shell
(`stages/audio.py`) sends, stores and acks exactly what a `Step` says, in its order.

Invariants (no utterance lost, none doubled):
- A frame is held (not acked) while the open utterance may still need it: from the open utterance's first padded
  sample on, or the last `speech_pad_ms` of audio when none is open. A worker that dies replays held frames.
- An utterance is sent before the checkpoint that counts it (next utterance seq, resume sample) and the checkpoint
  before the acks of the frames it covers; a replay resumes at the checkpoint's sample, so a sent utterance is not
  cut again and the next keeps its seq. A crash between send and checkpoint repeats the same (session, seq), which
  consumers drop as a duplicate.
- A session ended by a disconnect keeps its checkpoint (the client may resume and its utterances keep counting);
  any other end drops it.
- Audio is taken in sample order. A frame that starts past the audio taken so far (it came through a newer topic
  generation, or a replay, before the older records in front of it) waits, unacked, until the gap fills; an end
  waits for those frames. A gap still open with `MAX_EARLY_MS` of audio waiting behind it is given up on (the
  endpointer closes what is open at it), so a record that never comes cannot stall the session.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from moodstream.processors.endpointer import (
    AcousticChunk,
    Endpointer,
    Event,
    SpeechSoFar,
    SpeechStart,
    UtteranceCut,
)
from moodstream.processors.level import LevelMeter
from moodstream.schemas.audio import ms_to_samples, samples_to_ms
from moodstream.schemas.records import (
    AcousticWindow,
    AudioFrame,
    AudioLevel,
    PartialAudio,
    Record,
    SessionCheckpoint,
    SessionControl,
    SessionEnded,
    Utterance,
    VadEvent,
)
from moodstream.schemas.topics import ACOUSTIC_SCORES, ACOUSTIC_WINDOWS, EVENTS, PARTIAL_AUDIO, UTTERANCES, TopicSpec

log = logging.getLogger("moodstream.audio")

MAX_EARLY_MS = 10_000
"""Audio that may wait behind a gap before the gap is given up on: more than a rebalance's re-read takes."""

Token = TypeVar("Token")
"""Whatever the shell acknowledges an input record by (a Faust event; an int in tests)."""


@dataclass(frozen=True)
class Send:
    topic: TopicSpec
    record: Record


def announce_end(ended: SessionEnded) -> list[Send]:
    """A session's end: to its clients, and to the fusion stage, which summarises the session once its results are
    in."""
    return [Send(EVENTS, ended), Send(ACOUSTIC_SCORES, ended)]


@dataclass(frozen=True)
class Store:
    """Write the session's checkpoint (None: delete it)."""

    checkpoint: SessionCheckpoint | None


@dataclass
class Step(Generic[Token]):
    """What to do after one input record, in order: `actions`, then ack `acks`."""

    actions: list[Send | Store] = field(default_factory=list)
    acks: list[Token] = field(default_factory=list)


class AudioSession(Generic[Token]):
    """The audio stage's state for one session: endpointer, level meter, held frames, session options."""

    def __init__(
        self, session_id: str, endpointer: Endpointer, meter: LevelMeter, checkpoint: SessionCheckpoint | None = None
    ) -> None:
        self.session_id = session_id
        self.endpointer = endpointer
        self.meter = meter
        self.fusion_alpha = checkpoint.fusion_alpha if checkpoint else None
        self.partials = checkpoint.partials if checkpoint else True
        self.held: collections.deque[tuple[Token, int]] = collections.deque()
        """Unacked input records and the session sample one past each one's audio."""
        self.last_received_at_ms = 0.0
        self.early: dict[int, tuple[AudioFrame, Token]] = {}
        """Frames that came ahead of a gap, by first sample; unacked until taken."""
        self.waiting_end: tuple[SessionControl, Token] | None = None
        """An end that came while frames before it were still missing."""
        self.ended = False
        self._seen_frame = False  # after a takeover the first frame sets the position: acked silence may precede it
        if checkpoint:  # a session taken over after a crash or rebalance
            endpointer.next_utterance_seq = checkpoint.next_utterance_seq
            endpointer.reset(checkpoint.resume_sample)

    def checkpoint(self) -> SessionCheckpoint:
        return SessionCheckpoint(
            session_id=self.session_id,
            next_utterance_seq=self.endpointer.next_utterance_seq,
            resume_sample=self.endpointer.position,
            fusion_alpha=self.fusion_alpha,
            partials=self.partials,
        )

    def on_frame(self, frame: AudioFrame, token: Token) -> Step[Token]:
        step: Step[Token] = Step()
        if self._seen_frame and frame.start_sample > self.endpointer.position:
            self.early[frame.start_sample] = (frame, token)
            waiting = sum(len(f.pcm) // 2 for f, _t in self.early.values())
            if waiting <= ms_to_samples(MAX_EARLY_MS):
                return step
            frame, token = self.early.pop(min(self.early))  # give the gap up
        self._take(step, frame, token)
        while self.early and min(self.early) <= self.endpointer.position:
            self._take(step, *self.early.pop(min(self.early)))
        if self.waiting_end and not self.early:
            self._end(step, *self.waiting_end)
        return step

    def _take(self, step: Step[Token], frame: AudioFrame, token: Token) -> None:
        pcm, start = frame.pcm, frame.start_sample
        already = self.endpointer.position - start
        if already < 0 and self._seen_frame:
            # a tripwire for records skipped by the consumer: the endpointer closes what is open at the gap
            log.warning("session %s: samples %d-%d never arrived", self.session_id, self.endpointer.position, start)
        self._seen_frame = True
        self.last_received_at_ms = frame.received_at_ms
        self.held.append((token, start + len(pcm) // 2))
        if already > 0:  # resent by a resuming client or replayed after a crash: only new samples count
            pcm, start = pcm[2 * already :], start + already
        if pcm:
            self._publish(step, self.endpointer.feed(pcm, start), frame.received_at_ms)
            self._levels(step, self.meter.feed(pcm, start))
        open_since = self.endpointer.open_since
        pad = ms_to_samples(self.endpointer.options.speech_pad_ms)
        self._release(step, open_since if open_since is not None else self.endpointer.position - pad)

    def on_start(self, control: SessionControl, token: Token) -> Step[Token]:
        step: Step[Token] = Step()
        options = control.options
        alpha = options.fusion_alpha if options.fusion_alpha is not None else self.fusion_alpha
        if (alpha, options.partials) != (self.fusion_alpha, self.partials):
            # stored before the ack: the start record is not replayed after a crash, the checkpoint is
            self.fusion_alpha, self.partials = alpha, options.partials
            step.actions.append(Store(self.checkpoint()))
        step.acks.append(token)
        return step

    def on_end(self, control: SessionControl, token: Token) -> Step[Token]:
        """Close what is open, announce the end, keep or drop the checkpoint, release everything held; or, while
        frames before the end are missing, wait for them."""
        step: Step[Token] = Step()
        if self.early:
            self.waiting_end = (control, token)
        else:
            self._end(step, control, token)
        return step

    def _end(self, step: Step[Token], control: SessionControl, token: Token) -> None:
        self.ended, self.waiting_end = True, None
        self._publish(step, self.endpointer.flush(), self.last_received_at_ms or control.at_ms)
        self._levels(step, [self.meter.flush()])
        ended = SessionEnded(
            session_id=self.session_id,
            utterances=self.endpointer.next_utterance_seq,
            awaiting_results=True,  # the fusion stage sends one final result per utterance
            reason=control.reason,
            duration_ms=samples_to_ms(self.endpointer.position),
            awaiting_summary=True,  # and, once they are in, the session's summary
        )
        step.actions += announce_end(ended)
        step.actions.append(Store(self.checkpoint() if control.reason == "disconnect" else None))
        self._release(step, None)
        step.acks.append(token)

    def release_all(self) -> list[Token]:
        """Every held record (a session given up as abandoned)."""
        step: Step[Token] = Step()
        self._release(step, None)
        step.acks += [token for _frame, token in self.early.values()]
        if self.waiting_end:
            step.acks.append(self.waiting_end[1])
        return step.acks

    def _release(self, step: Step[Token], through_sample: int | None) -> None:
        while self.held and (through_sample is None or self.held[0][1] <= through_sample):
            step.acks.append(self.held.popleft()[0])

    def _levels(self, step: Step[Token], readings: list) -> None:
        for reading in readings:
            if reading is not None:
                step.actions.append(Send(EVENTS, AudioLevel(session_id=self.session_id, **reading.__dict__)))

    def _publish(self, step: Step[Token], events: list[Event], received_at_ms: float) -> None:
        sid = self.session_id
        for event in events:
            if isinstance(event, SpeechStart):
                at = samples_to_ms(event.start_sample)
                step.actions.append(Send(EVENTS, VadEvent(type="vad.speech_start", session_id=sid,
                                                          utterance_seq=event.utterance_seq, at_ms=at)))  # fmt: skip
            elif isinstance(event, AcousticChunk):
                step.actions.append(Send(ACOUSTIC_WINDOWS, self._window(event, received_at_ms)))
            elif isinstance(event, SpeechSoFar):
                if self.partials:
                    step.actions.append(Send(PARTIAL_AUDIO, self._speech_so_far(event, received_at_ms)))
            elif isinstance(event, UtteranceCut):
                step.actions.append(Send(UTTERANCES, self._utterance(event, received_at_ms)))
                at = samples_to_ms(event.end_sample)
                step.actions.append(Send(EVENTS, VadEvent(type="vad.speech_end", session_id=sid,
                                                          utterance_seq=event.utterance_seq, at_ms=at)))  # fmt: skip
                step.actions.append(Store(self.checkpoint()))

    def _window(self, chunk: AcousticChunk, received_at_ms: float) -> AcousticWindow:
        return AcousticWindow(
            session_id=self.session_id,
            utterance_seq=chunk.utterance_seq,
            window_seq=chunk.window_seq,
            start_ms=samples_to_ms(chunk.start_sample),
            end_ms=samples_to_ms(chunk.start_sample + len(chunk.pcm) // 2),
            received_at_ms=received_at_ms,
            pcm=chunk.pcm,
        )

    def _speech_so_far(self, event: SpeechSoFar, received_at_ms: float) -> PartialAudio:
        return PartialAudio(
            session_id=self.session_id,
            utterance_seq=event.utterance_seq,
            chunk_seq=event.chunk_seq,
            start_ms=samples_to_ms(event.start_sample),
            end_ms=samples_to_ms(event.start_sample + len(event.pcm) // 2),
            speech_start_ms=samples_to_ms(event.speech_start_sample),
            received_at_ms=received_at_ms,
            pcm=event.pcm,
        )

    def _utterance(self, cut: UtteranceCut, received_at_ms: float) -> Utterance:
        return Utterance(
            session_id=self.session_id,
            utterance_seq=cut.utterance_seq,
            start_ms=samples_to_ms(cut.start_sample),
            end_ms=samples_to_ms(cut.end_sample),
            end_reason=cut.reason,  # type: ignore[arg-type]
            pcm_start_ms=samples_to_ms(cut.pcm_start_sample),
            gated=cut.gated,  # type: ignore[arg-type]
            last_frame_received_at_ms=received_at_ms,
            fusion_alpha=self.fusion_alpha,
            pcm=cut.pcm,
        )
