"""Audio stage: frames in; levels, VAD events, acoustic windows and utterances out.

Crash safety (no utterance lost, none doubled): a session's frames stay unacked from the start of its open
utterance (minus padding), so a worker that dies mid-utterance leaves them to be replayed by the partition's next
owner. When an utterance is cut, it is sent, then the session's checkpoint (next utterance seq, resume sample) is
written to a changelogged table, then its frames are acked; Faust flushes the producer before it commits offsets.
On replay, frames before the checkpoint's resume sample are skipped, so an utterance already sent is not cut again
and the next one keeps its seq. A replay that repeats a cut (crash between send and checkpoint) repeats the same
(session, utterance seq), which consumers treat as a duplicate.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass, field

import faust
from faust.types import TP

from processors.endpointer import (
    AcousticChunk,
    Endpointer,
    EndpointerOptions,
    SpeechStart,
    UtteranceCut,
    samples_to_ms,
)
from processors.level import LevelMeter
from processors.vad import SileroStream, load_silero
from processors.worker import ModelVersions, StageContext
from schemas import SchemaError, decode
from schemas.records import (
    AcousticWindow,
    AudioFrame,
    AudioLevel,
    SessionControl,
    SessionEnded,
    Utterance,
    VadEvent,
)
from schemas.topics import ACOUSTIC_WINDOWS, AUDIO, EVENTS, UTTERANCES

log = logging.getLogger("moodstream.audio")


@dataclass
class SessionAudio:
    """Per-session state of the audio stage on this worker."""

    endpointer: Endpointer
    meter: LevelMeter
    partition: int
    """The audio partition the session's records come from (its state goes when that partition is revoked)."""
    held: collections.deque[tuple[faust.EventT, int]] = field(default_factory=collections.deque)
    """Unacked frame events and the session sample one past each frame's end."""
    last_seen: float = field(default_factory=time.monotonic)
    last_received_at_ms: float = 0.0
    last_offset: int | None = None
    """Offset of the last frame record processed (None until one is)."""
    fusion_alpha: float | None = None
    """The session's text weight from its start message (None: the server default)."""


def register(ctx: StageContext) -> ModelVersions:
    """Register the audio agent; returns the model versions it serves."""
    app, settings = ctx.app, ctx.settings
    options = EndpointerOptions()
    model = ctx.preload(load_silero)
    # session id (bytes) → JSON {"next_seq", "resume", "fusion_alpha"}; raw bytes because the app's serializers are raw
    checkpoints = app.Table("vad-checkpoints", partitions=AUDIO.partitions, key_type=bytes, value_type=bytes)
    sessions: dict[str, SessionAudio] = {}
    audio_topic = ctx.topic(AUDIO)

    def open_session(sid: str, partition: int) -> SessionAudio:
        raw = checkpoints.get(sid.encode())
        checkpoint = json.loads(raw) if raw else None
        endpointer = Endpointer(SileroStream(model.get()), options)
        if checkpoint:  # a session taken over after a crash or rebalance
            endpointer.next_utterance_seq = checkpoint["next_seq"]
            endpointer.reset(checkpoint["resume"])
            log.info("session %s resumed at utterance %d", sid, checkpoint["next_seq"])
        state = SessionAudio(endpointer, LevelMeter(settings.level_window_ms), partition)
        state.fusion_alpha = checkpoint.get("fusion_alpha") if checkpoint else None
        sessions[sid] = state
        return state

    def save_checkpoint(sid: str, state: SessionAudio) -> None:
        checkpoints[sid.encode()] = json.dumps(
            {
                "next_seq": state.endpointer.next_utterance_seq,
                "resume": state.endpointer.position,
                "fusion_alpha": state.fusion_alpha,
            }
        ).encode()

    async def ack_through(stream: faust.StreamT, state: SessionAudio, safe_sample: int) -> None:
        while state.held and state.held[0][1] <= safe_sample:
            await stream.ack(state.held.popleft()[0])

    async def publish(sid: str, state: SessionAudio, events: list, received_at_ms: float) -> None:
        for event in events:
            if isinstance(event, SpeechStart):
                vad = VadEvent(
                    type="vad.speech_start",
                    session_id=sid,
                    utterance_seq=event.utterance_seq,
                    at_ms=samples_to_ms(event.start_sample),
                )
                await ctx.emit(EVENTS, vad, sid)
            elif isinstance(event, AcousticChunk):
                window = AcousticWindow(
                    session_id=sid,
                    utterance_seq=event.utterance_seq,
                    window_seq=event.window_seq,
                    start_ms=samples_to_ms(event.start_sample),
                    end_ms=samples_to_ms(event.start_sample + len(event.pcm) // 2),
                    received_at_ms=received_at_ms,
                    pcm=event.pcm,
                )
                await ctx.emit(ACOUSTIC_WINDOWS, window, sid)
            elif isinstance(event, UtteranceCut):
                vad = VadEvent(
                    type="vad.speech_end",
                    session_id=sid,
                    utterance_seq=event.utterance_seq,
                    at_ms=samples_to_ms(event.end_sample),
                )
                utterance = Utterance(
                    session_id=sid,
                    utterance_seq=event.utterance_seq,
                    start_ms=samples_to_ms(event.start_sample),
                    end_ms=samples_to_ms(event.end_sample),
                    end_reason=event.reason,  # type: ignore[arg-type]
                    pcm_start_ms=samples_to_ms(event.pcm_start_sample),
                    gated=event.gated,  # type: ignore[arg-type]
                    last_frame_received_at_ms=received_at_ms,
                    fusion_alpha=state.fusion_alpha,
                    pcm=event.pcm,
                )
                await ctx.emit(UTTERANCES, utterance, sid)
                await ctx.emit(EVENTS, vad, sid)
                save_checkpoint(sid, state)

    async def emit_levels(sid: str, readings: list) -> None:
        for reading in readings:
            if reading is not None:
                await ctx.emit(EVENTS, AudioLevel(session_id=sid, **reading.__dict__), sid)

    async def on_frame(stream: faust.StreamT, event: faust.EventT, frame: AudioFrame) -> None:
        sid = frame.session_id
        message = event.message
        state = sessions.get(sid) or open_session(sid, message.partition)
        state.last_seen = time.monotonic()
        pcm, start_sample = frame.pcm, frame.start_sample
        already = state.endpointer.position - start_sample
        if already < 0 and state.last_offset is not None:
            # Records of this session were skipped: a tripwire for the consumer bug PromptFetchConsumer guards
            # against. The endpointer closes what is open at the gap; the audio in it is lost.
            log.warning(
                "session %s: samples %d-%d were skipped by the consumer (%s[%d] offset %d)",
                sid, state.endpointer.position, start_sample, message.topic, message.partition, message.offset,
            )  # fmt: skip
        state.last_offset = message.offset
        state.last_received_at_ms = frame.received_at_ms
        end_sample = frame.start_sample + len(frame.pcm) // 2
        state.held.append((event, end_sample))
        if already > 0:  # resent by a resuming client or replayed after a crash: only new samples count
            pcm, start_sample = pcm[2 * already :], start_sample + already
        if pcm:
            events = state.endpointer.feed(pcm, start_sample)  # ~0.2 ms per 32 ms: cheap enough inline
            await publish(sid, state, events, frame.received_at_ms)
            await emit_levels(sid, state.meter.feed(pcm, start_sample))
        open_since = state.endpointer.open_since
        safe = open_since if open_since is not None else state.endpointer.position - options.speech_pad_ms * 16
        await ack_through(stream, state, safe)

    async def on_control(stream: faust.StreamT, event: faust.EventT, control: SessionControl) -> None:
        sid = control.session_id
        if control.action == "start":
            if control.options.fusion_alpha is not None:
                # checkpointed before the ack: the start record is not replayed after a crash, the checkpoint is
                state = sessions.get(sid) or open_session(sid, event.message.partition)
                state.fusion_alpha = control.options.fusion_alpha
                save_checkpoint(sid, state)
            await stream.ack(event)
            return
        state = sessions.pop(sid, None) or open_session(sid, event.message.partition)
        sessions.pop(sid, None)
        await publish(sid, state, state.endpointer.flush(), state.last_received_at_ms or control.at_ms)
        await emit_levels(sid, [state.meter.flush()])
        ended = SessionEnded(
            session_id=sid,
            utterances=state.endpointer.next_utterance_seq,
            awaiting_results=True,  # the fusion stage sends one final result per utterance
            reason=control.reason,
            duration_ms=samples_to_ms(state.endpointer.position),
        )
        await ctx.emit(EVENTS, ended, sid)
        if control.reason == "disconnect":  # the client may resume: its next utterance keeps counting
            save_checkpoint(sid, state)
        else:
            checkpoints.pop(sid.encode(), None)
        await ack_through(stream, state, float("inf"))  # type: ignore[arg-type]
        await stream.ack(event)

    @app.agent(audio_topic, name="audio")
    async def audio(stream: faust.StreamT) -> None:
        """Audio frames and session control in, in order per session."""
        manual = stream.noack()
        async for event in manual.events():
            try:
                record = decode(event.value, (AudioFrame, SessionControl))
            except SchemaError as exc:
                await ctx.dead_letter(event, "audio", exc)
                await manual.ack(event)
                continue
            try:
                if isinstance(record, AudioFrame):
                    await on_frame(manual, event, record)
                else:
                    await on_control(manual, event, record)
            except Exception as exc:  # one bad record must not stop the partition
                log.exception("audio stage failed on session %s", record.session_id)
                await ctx.dead_letter(event, "audio", exc)
                await manual.ack(event)

    def forget_revoked(_app: faust.App, revoked: set[TP], **_kwargs: object) -> None:
        # The partition's next owner replays the unacked frames and resumes from the checkpoint. Acking them here
        # would skip that audio; keeping the state would serve a stale position if the partition came back.
        gone = {tp.partition for tp in revoked if tp.topic == AUDIO.name}
        for sid in [sid for sid, state in sessions.items() if state.partition in gone]:
            del sessions[sid]

    app.on_partitions_revoked.connect(forget_revoked, weak=False)  # a local function: keep a strong reference

    @app.timer(interval=10.0)
    async def expire_idle_sessions() -> None:
        # A session whose end never came (its gateway died) is closed after a few idle timeouts.
        cutoff = time.monotonic() - 4 * settings.idle_timeout_s
        for sid in [s for s, st in sessions.items() if st.last_seen < cutoff]:
            state = sessions.pop(sid)
            log.info("session %s expired after %.0fs idle", sid, 4 * settings.idle_timeout_s)
            while state.held:
                event = state.held.popleft()[0]
                event.ack()

    return {"vad": "silero_vad_v6"}
