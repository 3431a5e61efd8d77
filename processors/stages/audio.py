"""Audio stage shell: frames and session control in; levels, VAD events, acoustic windows and utterances out.

The state machine is `audio_session.AudioSession`, or a call's `call_session.CallSession` (their docstrings state the
no-loss, no-duplicate invariants); this shell decodes, calls it, and carries out its `Step`: sends, writes the
session's checkpoint to the checkpoint topic (or its tombstone), then acks. `checkpoints.CheckpointStore` reads a
partition's checkpoints when it is taken over.
"""

from __future__ import annotations

import logging
import time

import faust
from faust.types import TP

from moodstream.broker.generations import is_topic
from moodstream.processors.audio_session import AudioSession, Send, Step
from moodstream.processors.call_session import CallSession
from moodstream.processors.endpointer import Endpointer, EndpointerOptions
from moodstream.processors.level import LevelMeter
from moodstream.processors.runtime.checkpoints import CheckpointStore
from moodstream.processors.runtime.context import ModelVersions, StageContext
from moodstream.processors.vad import SileroStream, load_silero
from moodstream.schemas.records import AudioFrame, SessionCheckpoint, SessionControl, SessionOptions
from moodstream.schemas.topics import AUDIO, CHECKPOINTS

log = logging.getLogger("moodstream.audio")

Session = AudioSession[faust.EventT] | CallSession[faust.EventT]
"""A mono session's state machine, or a call's (one per channel behind the same interface)."""
ABANDONED_AFTER_TIMEOUTS = 4
"""A session without records for this many idle timeouts is dropped (its gateway died without an end)."""


class AudioShell:
    """This worker's audio sessions and what it does with their steps; the agent below only decodes and calls it."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.model = ctx.preload(load_silero)
        self.checkpoints = CheckpointStore(ctx.settings)
        self.sessions: dict[str, tuple[Session, int, float]] = {}
        """session id → (its state machine, its partition, when it last had a record)."""

    async def session(self, record: AudioFrame | SessionControl, partition: int) -> Session:
        sid = record.session_id
        if sid not in self.sessions:
            checkpoint = await self.checkpoints.get(sid, partition)
            state = self.open_session(record, checkpoint)
            if checkpoint:
                log.info("session %s resumed at utterance %d", sid, checkpoint.next_utterance_seq)
        else:
            state = self.sessions[sid][0]
        self.sessions[sid] = (state, partition, time.monotonic())
        return state

    def open_session(self, record: AudioFrame | SessionControl, checkpoint: SessionCheckpoint | None) -> Session:
        """A mono session, or a call when the checkpoint, the start's options or the frame say it has channels (or
        roles: a mono session that names its party has its records tagged like a call's)."""
        if checkpoint and checkpoint.channels:
            return CallSession(record.session_id, checkpoint.roles or (), self.new_channel, checkpoint)
        options = record.options if isinstance(record, SessionControl) else SessionOptions(channels=record.channels)
        roles = options.role_names()
        if roles:  # a call, or a mono session that names its party
            return CallSession(record.session_id, roles, self.new_channel, checkpoint)
        return AudioSession(record.session_id, *self.new_channel(), checkpoint)

    def new_channel(self) -> tuple[Endpointer, LevelMeter]:
        settings = self.ctx.settings
        windows = EndpointerOptions.acoustic_window_ms if settings.live_voice else 0
        options = EndpointerOptions(partial_interval_ms=settings.partial_interval_ms, acoustic_window_ms=windows)
        return Endpointer(SileroStream(self.model.get()), options), LevelMeter(settings.level_window_ms)

    async def handle(self, stream: faust.StreamT, event: faust.EventT, record: AudioFrame | SessionControl) -> None:
        sid, partition = record.session_id, event.message.partition
        state = await self.session(record, partition)
        if isinstance(record, AudioFrame):
            step = state.on_frame(record, event)
        elif record.action == "start":
            step = state.on_start(record, event)
        else:
            step = state.on_end(record, event)
        if state.ended:
            self.sessions.pop(sid, None)
        await self.carry_out(stream, sid, partition, step)

    async def carry_out(self, stream: faust.StreamT, sid: str, partition: int, step: Step[faust.EventT]) -> None:
        for action in step.actions:
            if isinstance(action, Send):
                await self.ctx.send(action.topic, action.record, sid, partition)
            else:
                await self.ctx.emit(CHECKPOINTS, action.checkpoint, sid)  # None: a tombstone
                await self.checkpoints.put(sid, partition, action.checkpoint)
        for event in step.acks:
            await stream.ack(event)

    def forget(self, partitions: set[int]) -> None:
        """The partitions' next owner replays the unacked frames and resumes from the checkpoint. Acking them here
        would skip that audio; keeping the state would serve a stale position if a partition came back."""
        self.checkpoints.forget(partitions)
        for sid in [sid for sid, (_s, partition, _seen) in self.sessions.items() if partition in partitions]:
            del self.sessions[sid]

    def expire_abandoned(self) -> None:
        if dropped := self.checkpoints.expire():
            log.info("forgot %d checkpoints of sessions whose resume tokens have expired", dropped)
        cutoff = time.monotonic() - ABANDONED_AFTER_TIMEOUTS * self.ctx.settings.idle_timeout_s
        for sid in [sid for sid, (_s, _p, seen) in self.sessions.items() if seen < cutoff]:
            state, _partition, _seen = self.sessions.pop(sid)
            log.info("session %s dropped: no records for %d idle timeouts", sid, ABANDONED_AFTER_TIMEOUTS)
            for event in state.release_all():
                event.ack()


def register(ctx: StageContext) -> ModelVersions:
    """Register the audio agent; returns the model versions it serves."""
    shell = AudioShell(ctx)

    @ctx.app.agent(ctx.topic(AUDIO), name="audio")
    async def audio(stream: faust.StreamT) -> None:
        """Audio frames and session control in, in order per session."""
        manual = stream.noack()

        async def handle(event: faust.EventT, record: AudioFrame | SessionControl) -> None:
            await shell.handle(manual, event, record)

        await ctx.each_record(manual, (AudioFrame, SessionControl), "audio", handle, manual_ack=True)

    def forget_revoked(_app: faust.App, revoked: set[TP], **_kwargs: object) -> None:
        shell.forget({tp.partition for tp in revoked if is_topic(tp.topic, AUDIO)})

    ctx.app.on_partitions_revoked.connect(forget_revoked, weak=False)  # a local function: keep a strong reference

    @ctx.app.timer(interval=10.0)
    async def expire_abandoned_sessions() -> None:
        shell.expire_abandoned()

    return {"vad": "silero_vad_v6"}
