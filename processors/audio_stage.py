"""Audio stage shell: frames and session control in; levels, VAD events, acoustic windows and utterances out.

The state machine is `audio_session.AudioSession` (its docstring states the no-loss, no-duplicate invariants); this
shell decodes, calls it, and carries out its `Step`: sends, writes the session's checkpoint to the checkpoint topic
(or its tombstone), then acks. `checkpoints.CheckpointStore` reads a partition's checkpoints when it is taken over.
"""

from __future__ import annotations

import logging
import time

import faust
from faust.types import TP

from processors.audio_session import AudioSession, Send, Step
from processors.checkpoints import CheckpointStore
from processors.endpointer import Endpointer, EndpointerOptions
from processors.level import LevelMeter
from processors.runtime import ModelVersions, StageContext
from processors.vad import SileroStream, load_silero
from schemas.records import AudioFrame, SessionControl
from schemas.topics import AUDIO, CHECKPOINTS

log = logging.getLogger("moodstream.audio")

ABANDONED_AFTER_TIMEOUTS = 4
"""A session without records for this many idle timeouts is dropped (its gateway died without an end)."""


def register(ctx: StageContext) -> ModelVersions:
    """Register the audio agent; returns the model versions it serves."""
    app, settings = ctx.app, ctx.settings
    model = ctx.preload(load_silero)
    checkpoints = CheckpointStore(settings)
    sessions: dict[str, tuple[AudioSession[faust.EventT], int, float]] = {}  # sid → (session, partition, last seen)

    async def session(sid: str, partition: int) -> AudioSession[faust.EventT]:
        if sid not in sessions:
            checkpoint = await checkpoints.get(sid, partition)
            endpointer = Endpointer(SileroStream(model.get()), EndpointerOptions())
            state = AudioSession(sid, endpointer, LevelMeter(settings.level_window_ms), checkpoint)
            if checkpoint:
                log.info("session %s resumed at utterance %d", sid, checkpoint.next_utterance_seq)
            sessions[sid] = (state, partition, time.monotonic())
        state, _partition, _seen = sessions[sid]
        sessions[sid] = (state, partition, time.monotonic())
        return state

    async def carry_out(stream: faust.StreamT, sid: str, partition: int, step: Step[faust.EventT]) -> None:
        for action in step.actions:
            if isinstance(action, Send):
                await ctx.emit(action.topic, action.record, sid)
            else:
                await ctx.emit(CHECKPOINTS, action.checkpoint, sid)  # None: a tombstone
                await checkpoints.put(sid, partition, action.checkpoint)
        for event in step.acks:
            await stream.ack(event)

    @app.agent(ctx.topic(AUDIO), name="audio")
    async def audio(stream: faust.StreamT) -> None:
        """Audio frames and session control in, in order per session."""
        manual = stream.noack()

        async def handle(event: faust.EventT, record: AudioFrame | SessionControl) -> None:
            sid, partition = record.session_id, event.message.partition
            state = await session(sid, partition)
            if isinstance(record, AudioFrame):
                step = state.on_frame(record, event)
            elif record.action == "start":
                step = state.on_start(record, event)
            else:
                step = state.on_end(record, event)
                sessions.pop(sid, None)
            await carry_out(manual, sid, partition, step)

        await ctx.each_record(manual, (AudioFrame, SessionControl), "audio", handle, manual_ack=True)

    def forget_revoked(_app: faust.App, revoked: set[TP], **_kwargs: object) -> None:
        # The partition's next owner replays the unacked frames and resumes from the checkpoint. Acking them here
        # would skip that audio; keeping the state would serve a stale position if the partition came back.
        gone = {tp.partition for tp in revoked if tp.topic == AUDIO.name}
        checkpoints.forget(gone)
        for sid in [sid for sid, (_s, partition, _seen) in sessions.items() if partition in gone]:
            del sessions[sid]

    app.on_partitions_revoked.connect(forget_revoked, weak=False)  # a local function: keep a strong reference

    @app.timer(interval=10.0)
    async def expire_abandoned_sessions() -> None:
        cutoff = time.monotonic() - ABANDONED_AFTER_TIMEOUTS * settings.idle_timeout_s
        for sid in [sid for sid, (_s, _p, seen) in sessions.items() if seen < cutoff]:
            state, _partition, _seen = sessions.pop(sid)
            log.info("session %s dropped: no records for %d idle timeouts", sid, ABANDONED_AFTER_TIMEOUTS)
            for event in state.release_all():
                event.ack()

    return {"vad": "silero_vad_v6"}
