"""One WebSocket session's protocol as a pure state machine: no socket, no Kafka, no clock of its own.

`app.ClientSession` is the shell. It hands the machine the client's messages, the session's records from the events
topic and the monotonic time, and does what each call returns, in order: `Reply` (JSON to the client), `Publish`
(a record to the audio topic) and `Close` (end the connection, with a fatal error or normally). So every rule of the
protocol (what the first message may be, the admitted audio rate, idle and duration limits, batching, resume,
de-duplication, which socket owns a session) is a plain unit test.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from moodstream.schemas import errors as E
from moodstream.schemas.audio import SAMPLE_RATE, ms_to_samples, samples_to_ms
from moodstream.schemas.records import (
    AcousticScore,
    AudioFrame,
    ConnectionClaimed,
    FusedResult,
    PartialResult,
    Record,
    SessionControl,
    SessionEnded,
    SessionOptions,
    SessionSummary,
    VadEvent,
)
from moodstream.schemas.websocket import (
    CLIENT_MESSAGE,
    EndMessage,
    ErrorMessage,
    PingMessage,
    Pong,
    SessionStarted,
    StartMessage,
)
from moodstream.settings import Settings

MAX_TEXT_BYTES = 65_536
"""Longest text message (a resume's start lists the utterances it holds: a few KB for hours of speech)."""
RECENT_IDENTITIES = 4096
"""Events a session remembers sending, for dropping replays (levels, scores, partials: a few a second)."""
QUIET_DBFS = -40.0
"""A frame whose RMS is below this is quiet. Speech that reaches a gateway is louder; a noise floor above it only means
the smaller batches near an end of speech are never used."""
NEAR_END_MS = (350, 800)
"""Quiet audio after loud audio during which the endpointer may cut (it ends an utterance after 500 ms of silence by
its VAD, whose silence starts within about ±150 ms of the energy's drop): batches are `audio_batch_near_end_ms` there,
so the audio that ends an utterance waits less for its batch."""
CUT_BEFORE_QUIET_MS = 500
"""How long before the gateway's quiet began the endpointer's silence may have started (its 500 ms of silence by the
VAD can begin in loud non-speech): a `vad.speech_end` this far back still ends the quiet run it arrives in."""
PROVISIONAL = (PartialResult, AcousticScore)
"""Events about an utterance still open: once its final result is sent, any that arrive late are dropped."""


class QuietRun:
    """How long a session's audio has been quiet since it was last loud: near an end of speech or not."""

    QUIET_POWER = (32768 * 10 ** (QUIET_DBFS / 20)) ** 2
    """Mean square of int16 samples at `QUIET_DBFS`."""

    def __init__(self) -> None:
        self.heard_loud = False
        self.quiet_samples = 0
        self.cut = False
        """The utterance this quiet follows has been cut (its `vad.speech_end` came back): no end is near."""

    def feed(self, pcm: bytes, channels: int = 1) -> bool:
        """Count `pcm` (`channels` interleaved) in; whether it was loud."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        if float(np.mean(samples * samples)) >= self.QUIET_POWER:
            self.heard_loud, self.quiet_samples, self.cut = True, 0, False
            return True
        self.quiet_samples += len(samples) // channels  # time, not values: a call's frame holds both parties
        return False

    def speech_ended(self, end_sample: int, next_sample: int) -> None:
        """The endpointer cut speech that ended at `end_sample` (`next_sample`: the session sample after the audio
        counted so far). If that speech is what this quiet follows, the rest of the quiet has no end to find: its
        audio need not go in near-end records. An end from before this quiet (a late event of an earlier utterance)
        changes nothing."""
        quiet_from = next_sample - self.quiet_samples
        in_quiet = self.heard_loud and self.quiet_samples > 0  # a cut while loud audio goes on (max length): no
        if in_quiet and end_sample >= quiet_from - ms_to_samples(CUT_BEFORE_QUIET_MS):
            self.cut = True

    def near_end(self) -> bool:
        quiet_ms = self.quiet_samples * 1000 / SAMPLE_RATE
        return self.heard_loud and not self.cut and NEAR_END_MS[0] <= quiet_ms < NEAR_END_MS[1]

    def long_quiet(self) -> bool:
        """Quiet since the stream began, since the speech before it was cut, or for longer than an end of speech takes
        to be found: nothing is near."""
        return not self.heard_loud or self.cut or self.quiet_samples * 1000 >= NEAR_END_MS[1] * SAMPLE_RATE


@dataclass(frozen=True)
class SessionLimits:
    """What one session may do (from the gateway's settings)."""

    max_frame_bytes: int
    """Largest binary frame, in bytes of int16 PCM."""
    audio_batch_ms: int
    """Client frames are joined into one audio record of up to this much audio; 0 publishes each frame alone."""
    audio_batch_near_end_ms: int
    """The batch while an end of speech may be near (`QuietRun.near_end`)."""
    audio_batch_quiet_ms: int
    """The batch while a long quiet lasts (`QuietRun.long_quiet`); the first loud frame sends it at once."""
    max_realtime_factor: float
    """Admitted audio rate, × real time, once the burst is spent."""
    burst_s: float
    """Seconds of audio a connection may send at once before the rate applies."""
    max_ahead_s: float
    """How far ahead of the admitted rate audio may get before the session is closed (`too_fast`)."""
    idle_timeout_s: float
    """A session with no audio for this long is ended (pings and other messages do not count)."""
    max_session_s: float
    """A connection is ended after this long."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        return cls(
            max_frame_bytes=settings.max_frame_bytes,
            audio_batch_ms=settings.audio_batch_ms,
            audio_batch_near_end_ms=min(settings.audio_batch_near_end_ms, settings.audio_batch_ms),
            # 0 asks for no batching at all, quiet or not
            audio_batch_quiet_ms=max(settings.audio_batch_quiet_ms, settings.audio_batch_ms)
            if settings.audio_batch_ms
            else 0,
            max_realtime_factor=settings.max_realtime_factor,
            burst_s=settings.burst_s,
            max_ahead_s=settings.max_ahead_s,
            idle_timeout_s=settings.idle_timeout_s,
            max_session_s=settings.max_session_s,
        )


@dataclass(frozen=True)
class Reply:
    """Send this JSON message to the client."""

    message: dict


@dataclass(frozen=True)
class Publish:
    """Send this record to the audio topic, keyed by the session (frames and controls keep their order)."""

    record: AudioFrame | SessionControl


@dataclass(frozen=True)
class Close:
    """Close the connection: with `error`, after sending it as a fatal error message, with its close code; without,
    normally (1000)."""

    error: E.ErrorCode | None = None
    detail: str = ""


Action = Reply | Publish | Close


class SessionClosed(Exception):
    """A documented error that ends the connection before the session runs (the shell refuses with it)."""

    def __init__(self, error: E.ErrorCode, detail: str = "") -> None:
        super().__init__(detail or error.meaning)
        self.error = error
        self.detail = detail or error.meaning


def error_reply(error: E.ErrorCode, detail: str = "", fatal: bool = False) -> Reply:
    return Reply(ErrorMessage(code=error.code, message=detail or error.meaning, fatal=fatal).model_dump())


def parse_client_text(text: str) -> StartMessage | EndMessage | PingMessage | str:
    """A client message, or a string saying why it is not one."""
    try:
        return CLIENT_MESSAGE.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        return f"bad client message: {first['msg']} at {'.'.join(map(str, first['loc'])) or 'top level'}"


def opening_start(text: str) -> StartMessage:
    """The connection's first text message, which must be a valid start (anything else ends it: `bad_start`)."""
    if len(text) > MAX_TEXT_BYTES:
        raise SessionClosed(E.FRAME_TOO_LARGE, f"text message of {len(text)} bytes exceeds {MAX_TEXT_BYTES}")
    start = parse_client_text(text)
    if isinstance(start, str) and '"start"' in text:  # a start message with an invalid field
        raise SessionClosed(E.BAD_START, start)
    if not isinstance(start, StartMessage):
        raise SessionClosed(E.BAD_START, 'the first text message must be {"type":"start",...}')
    if start.sample_rate != SAMPLE_RATE:
        raise SessionClosed(E.BAD_START, f"sample_rate must be {SAMPLE_RATE}, got {start.sample_rate}")
    return start


class RecentIdentities:
    """A set that keeps only its `size` latest members: a session's memory of what it sent stays bounded."""

    def __init__(self, size: int) -> None:
        self._order: collections.deque[tuple[object, ...]] = collections.deque()
        self._members: set[tuple[object, ...]] = set()
        self.size = size

    def __contains__(self, identity: object) -> bool:
        return identity in self._members

    def add(self, identity: tuple[object, ...]) -> None:
        if identity in self._members:
            return
        self._order.append(identity)
        self._members.add(identity)
        while len(self._order) > self.size:
            self._members.discard(self._order.popleft())

    def discard(self, identity: tuple[object, ...]) -> None:
        self._members.discard(identity)  # its place in the order goes when it would have


class ClientProtocol:
    """One connection of a session: client audio in, the session's events out."""

    def __init__(self, limits: SessionLimits, session_id: str, connection_id: str, now: float) -> None:
        self.limits = limits
        self.session_id = session_id
        self.connection_id = connection_id
        self.connected_at = now
        self.last_audio_at = now
        self.claimed_at_ms = math.inf
        """When this connection claimed the session (its own `ConnectionClaimed`); a later claim takes it over."""
        self.seq = 0
        self.channels = 1
        """Channels interleaved in each binary frame (the start's `channels` option)."""
        self.next_sample = 0
        """Session sample index of the next audio sample (a resume starts at the client's resend point)."""
        self.connection_samples = 0
        self.batch: list[bytes] = []
        self.batch_samples = 0
        self.batch_received_at_ms = 0.0
        self.batch_due = math.inf
        self.quiet = QuietRun()
        self.warned_too_fast = False
        self.ending = False
        self.end_reason: str | None = None
        self.taken_over = False
        self.delivered = RecentIdentities(RECENT_IDENTITIES)
        """Identities of the events sent lately: a worker's replay repeats only recent ones."""
        self.final_utterances: set[int] = set()
        """Utterances whose final result the client has: later results of them are repeats or superseded."""
        self.ended_record: SessionEnded | None = None
        self.summaries: dict[tuple[int, str], SessionSummary] = {}
        """The session's summaries from the workers by the end each summarises (utterances, reason): the one of this
        connection's end goes on `session.ended`."""
        self.done = False
        """session.ended was sent: the connection has nothing more to say."""
        self.duplicates_dropped = 0

    # opening ----------------------------------------------------------------------------------------------------
    def start(
        self, start: StartMessage | None, resume_token: str, at_ms: float, connection_claim_ms: float
    ) -> list[Action]:
        """The session runs: tell the workers (in order with its audio) and the client. With a resume, `start` carries
        the client's resend point and the utterances it holds."""
        options = start.options if start else SessionOptions()
        self.channels = options.channels
        resumed = start is not None and start.resume_token is not None
        if resumed:
            assert start is not None
            self.next_sample = start.resume_from_sample
            self.final_utterances.update(start.delivered_utterances)
        self.claimed_at_ms = connection_claim_ms
        started = SessionStarted(
            session_id=self.session_id,
            resume_token=resume_token,
            max_frame_ms=round(samples_to_ms(self.limits.max_frame_bytes // 2)),
            resumed=resumed,
            max_realtime_factor=self.limits.max_realtime_factor,
            burst_s=self.limits.burst_s,
            max_ahead_s=self.limits.max_ahead_s,
        )
        return [Publish(self.control("start", at_ms, options=options)), Reply(started.model_dump())]

    def control(
        self, action: str, at_ms: float, reason: str = "client", options: SessionOptions | None = None
    ) -> SessionControl:
        return SessionControl(
            session_id=self.session_id,
            action=action,  # type: ignore[arg-type]
            next_seq=self.seq,
            options=options or SessionOptions(),
            reason=reason,  # type: ignore[arg-type]
            at_ms=at_ms,
        )

    # client → server ----------------------------------------------------------------------------------------------
    def on_text(self, text: str, now: float, at_ms: float) -> list[Action]:
        if len(text) > MAX_TEXT_BYTES:
            return [Close(E.FRAME_TOO_LARGE, f"text message of {len(text)} bytes exceeds {MAX_TEXT_BYTES}")]
        parsed = parse_client_text(text)
        if isinstance(parsed, PingMessage):
            return [Reply(Pong().model_dump())]
        if isinstance(parsed, EndMessage):
            return self.end("client", at_ms)
        if isinstance(parsed, StartMessage):
            return [error_reply(E.BAD_MESSAGE, "start is only allowed as the first message")]
        return [error_reply(E.BAD_MESSAGE, parsed)]

    def on_audio(self, pcm: bytes, now: float, at_ms: float) -> list[Action]:
        max_bytes = self.limits.max_frame_bytes * self.channels  # the limit is a duration: a call's frames hold two
        if len(pcm) > max_bytes:
            return [Close(E.FRAME_TOO_LARGE, f"frame of {len(pcm)} bytes exceeds {max_bytes}")]
        frame_bytes = 2 * self.channels
        if len(pcm) % frame_bytes or not pcm:
            detail = f"frame of {len(pcm)} bytes dropped: it must hold whole samples of {self.channels} × int16"
            return [error_reply(E.ODD_FRAME, detail)]
        samples = len(pcm) // frame_bytes
        self.last_audio_at = now
        self.connection_samples += samples
        ahead_s = self.ahead_of_rate_s(now)
        actions: list[Action] = []
        if ahead_s > 0:
            actions = self.too_fast(ahead_s)
            if actions and isinstance(actions[0], Close):
                return actions
        self.warned_too_fast = ahead_s > 0
        was_long_quiet = self.quiet.long_quiet()
        # speech starts after a long quiet: the quiet held so far goes at once, with this frame, so speech waits for
        # no batch (one record either way: a refused publish is always the latest)
        onset = self.quiet.feed(pcm, self.channels) and was_long_quiet and bool(self.batch)
        limit_ms = self.batch_limit_ms()
        if not self.batch:
            self.batch_received_at_ms = at_ms
            self.batch_due = now + limit_ms / 1000
        self.batch.append(pcm)
        self.batch_samples += samples
        self.next_sample += samples
        if onset or self.batch_samples * 1000 >= limit_ms * SAMPLE_RATE:
            actions.append(Publish(self.take_batch()))
        return actions

    def batch_limit_ms(self) -> int:
        """How much audio the batch holds now: little where an utterance may end, much in a long quiet."""
        if self.quiet.near_end():
            return self.limits.audio_batch_near_end_ms
        if self.quiet.long_quiet():
            return self.limits.audio_batch_quiet_ms
        return self.limits.audio_batch_ms

    def too_fast(self, ahead_s: float) -> list[Action]:
        """A warning the first time a client gets ahead of the admitted rate; the close once too far ahead."""
        rate = f"{self.limits.max_realtime_factor:g}× real time after {self.limits.burst_s:g} s"
        if ahead_s > self.limits.max_ahead_s:
            return [Close(E.TOO_FAST, f"audio {ahead_s:.1f} s ahead of the admitted rate ({rate})")]
        if self.warned_too_fast:
            return []
        warning = f"slow down to {rate}: {self.limits.max_ahead_s:g} s further ahead closes the session"
        return [error_reply(E.TOO_FAST, warning)]

    def ahead_of_rate_s(self, now: float) -> float:
        """Seconds of this connection's audio beyond what the admitted rate allows by `now` (≤ 0: within it)."""
        allowed_s = (now - self.connected_at) * self.limits.max_realtime_factor + self.limits.burst_s
        return self.connection_samples / SAMPLE_RATE - allowed_s

    def take_batch(self) -> AudioFrame:
        """The held frames as one audio record (the next in the session's order)."""
        pcm = b"".join(self.batch)
        frame = AudioFrame(
            session_id=self.session_id,
            seq=self.seq,
            start_sample=self.next_sample - self.batch_samples,
            received_at_ms=self.batch_received_at_ms,
            channels=self.channels,
            pcm=pcm,
        )
        self.batch, self.batch_samples, self.batch_due = [], 0, math.inf
        self.seq += 1
        return frame

    def publish_refused(self, frame: AudioFrame) -> list[Action]:
        """The audio queue refused the latest record: its audio is dropped and the sample clock steps back, so later
        audio follows on without a gap."""
        assert frame.seq == self.seq - 1, "only the latest record can be refused"
        self.seq -= 1
        self.next_sample = frame.start_sample
        self.connection_samples -= frame.samples
        return [error_reply(E.AUDIO_DROPPED, f"{frame.samples / SAMPLE_RATE:.2f} s of audio dropped")]

    def on_tick(self, now: float, at_ms: float) -> list[Action]:
        """Deadlines: a held batch that is due, the idle timeout (no audio), the duration limit."""
        if self.ending:
            return []
        if now - self.connected_at >= self.limits.max_session_s:
            return [error_reply(E.MAX_DURATION), *self.end("max_duration", at_ms)]
        if now - self.last_audio_at >= self.limits.idle_timeout_s:
            return [error_reply(E.IDLE_TIMEOUT), *self.end("idle", at_ms)]
        if self.batch and now >= self.batch_due:  # a slow or pausing client: do not sit on its audio
            return [Publish(self.take_batch())]
        return []

    def next_deadline(self) -> float:
        """Monotonic time by which `on_tick` must be called (if no message comes first)."""
        if self.ending:
            return math.inf
        return min(
            self.connected_at + self.limits.max_session_s,
            self.last_audio_at + self.limits.idle_timeout_s,
            self.batch_due,
        )

    def end(self, reason: str, at_ms: float) -> list[Action]:
        """Finish the session: publish the held audio and the end, once. A connection that was taken over ends
        nothing: the session goes on over the other."""
        if self.ending or self.taken_over:
            return []
        self.ending = True
        self.end_reason = reason
        held = [Publish(self.take_batch())] if self.batch else []
        return [*held, Publish(self.control("end", at_ms, reason=reason))]

    # server → client ----------------------------------------------------------------------------------------------
    def on_event(self, record: Record) -> list[Action]:
        """One of the session's records from the events topic: what to send, in order (nothing for a repeat, a late
        provisional event, or the end of an earlier connection); `done` once session.ended went out."""
        if self.done:
            return []
        if isinstance(record, ConnectionClaimed):
            return self.on_claim(record)
        if isinstance(record, VadEvent) and record.type == "vad.speech_end" and self.channels == 1:
            # a call's quiet is both parties' at once: one party's end says nothing of the other's
            self.quiet.speech_ended(ms_to_samples(record.at_ms), self.next_sample)
        if isinstance(record, SessionSummary):  # not shown alone: it goes on session.ended
            self.summaries[(record.utterances, record.reason)] = record
            return self.end_if_complete([])
        if isinstance(record, PROVISIONAL) and record.utterance_seq in self.final_utterances:
            return []  # the final supersedes an utterance's partials and window scores: never shown after it
        identity = record.identity()
        superseded = isinstance(record, FusedResult) and record.utterance_seq in self.final_utterances
        if identity in self.delivered or superseded:  # a replay after a worker crash: never show it twice
            self.duplicates_dropped += 1
            return []
        self.delivered.add(identity)
        actions: list[Action] = []
        if isinstance(record, FusedResult) and record.final:
            self.final_utterances.add(record.utterance_seq)
        if isinstance(record, SessionEnded):
            if record.reason == "disconnect" and self.end_reason != "disconnect":
                # an earlier connection dropped and the session went on over this one: not the session's end
                self.delivered.discard(identity)
                return []
            self.ended_record = record  # this connection's end, or an earlier one's that really ended the session
        else:
            actions.append(Reply(record.model_dump(mode="json")))
        return self.end_if_complete(actions)

    def end_if_complete(self, actions: list[Action]) -> list[Action]:
        """`actions`, then session.ended (with its summary) once everything it waits for is in."""
        if self.ended_record is not None and self.results_complete():
            ended = self.ended_record.model_copy(update={"summary": self.summary_of_end()})
            actions.append(Reply(ended.model_dump(mode="json")))
            self.done = True
        return actions

    def summary_of_end(self) -> SessionSummary | None:
        """The summary of exactly this end (a summary of an earlier end of a resumed session does not count)."""
        ended = self.ended_record
        return self.summaries.get((ended.utterances, ended.reason)) if ended else None

    def on_claim(self, claim: ConnectionClaimed) -> list[Action]:
        """A later connection of this session (a resume, here or on another gateway) takes it over; this one closes
        without ending the session. An older claim arriving late changes nothing."""
        if claim.connection_id == self.connection_id or claim.at_ms < self.claimed_at_ms:
            return []
        if claim.at_ms == self.claimed_at_ms and claim.connection_id < self.connection_id:
            return []  # the same millisecond: the larger connection id wins, on both sides
        self.taken_over = True
        self.done = True
        return [Close(E.TAKEN_OVER, f"resumed by another connection on gateway {claim.instance_id}")]

    def results_complete(self) -> bool:
        """Every final result the end announces is in, and its summary when one was announced."""
        assert self.ended_record is not None
        if self.ended_record.awaiting_summary and self.summary_of_end() is None:
            return False
        if not self.ended_record.awaiting_results:
            return True
        return all(seq in self.final_utterances for seq in self.ended_record.utterance_seqs())

    def missing_results(self) -> list[int]:
        """Utterances announced by session.ended whose final result has not come."""
        if self.ended_record is None or not self.ended_record.awaiting_results:
            return []
        return [seq for seq in self.ended_record.utterance_seqs() if seq not in self.final_utterances]
