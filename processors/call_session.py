"""A call's audio stage: one `AudioSession` per channel behind the interface of one, so the stage shell runs mono
sessions and calls alike. No Kafka.

Each channel is a mono session of its own (endpointer, level meter, held frames): it is fed that channel's samples of
the call's frames, its records are renumbered (`call_utterance_seq`) and tagged with its channel and role, and its
checkpoint is the call checkpoint's entry for that channel. Overlapping speech is two utterances, one per channel.

Invariants, beside each channel's own (`audio_session`):
- A call frame is acked only once every channel has released it: the earliest open utterance of either channel keeps
  the frames it needs replayable.
- The call's checkpoint holds each channel's position as of that channel's last cut, and is stored wherever a
  channel would store its own; a replay resumes each channel at its own position, so neither cuts an utterance again
  nor loses the start of one that was open in it.
- session.ended goes out once, after every channel has flushed, with each channel's utterance count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic

import numpy as np

from moodstream.processors.audio_session import AudioSession, Send, Step, Store, Token, announce_end
from moodstream.processors.endpointer import Endpointer
from moodstream.processors.level import LevelMeter
from moodstream.schemas.records import (
    AudioFrame,
    ChannelPosition,
    Record,
    SessionCheckpoint,
    SessionControl,
    SessionEnded,
    call_utterance_seq,
)

log = logging.getLogger("moodstream.audio")

ChannelFactory = Callable[[], tuple[Endpointer, LevelMeter]]
"""A fresh endpointer and level meter for one channel."""


class CallSession(Generic[Token]):
    """The audio stage's state for one session of several channels."""

    def __init__(
        self,
        session_id: str,
        roles: tuple[str, ...],
        new_channel: ChannelFactory,
        checkpoint: SessionCheckpoint | None = None,
    ) -> None:
        self.session_id = session_id
        self.roles = checkpoint.roles if checkpoint and checkpoint.roles else roles
        count = len(self.roles)
        self.positions = list(checkpoint.channels or []) if checkpoint else []
        if len(self.positions) != count:
            self.positions = [ChannelPosition(next_index=0, resume_sample=0)] * count
        self.channels: list[AudioSession[int]] = []
        for position in self.positions:
            endpointer, meter = new_channel()
            own = checkpoint.model_copy(update={"next_utterance_seq": position.next_index,
                                                "resume_sample": position.resume_sample, "channels": None,
                                                "roles": None}) if checkpoint else None  # fmt: skip
            self.channels.append(AudioSession(session_id, endpointer, meter, own))
        self.waiting: dict[int, tuple[Token, int]] = {}
        """Ticket → the input record's token and how many channels still hold it."""
        self._next_ticket = 0
        self._ended_counts: dict[int, int] = {}
        self._ended_record: SessionEnded | None = None
        self._warned_channels = False
        self.ended = False

    def checkpoint(self) -> SessionCheckpoint:
        first = self.channels[0]
        return SessionCheckpoint(
            session_id=self.session_id,
            next_utterance_seq=sum(p.next_index for p in self.positions),
            resume_sample=min(p.resume_sample for p in self.positions),
            fusion_alpha=first.fusion_alpha,
            partials=first.partials,
            roles=self.roles,
            channels=self.positions,
        )

    def on_frame(self, frame: AudioFrame, token: Token) -> Step[Token]:
        if frame.channels != len(self.channels):
            if not self._warned_channels:  # once: a client resuming with another channel count sends 50 frames a second
                log.warning("session %s: %d-channel frames in a %d-channel session dropped", self.session_id,
                            frame.channels, len(self.channels))  # fmt: skip
                self._warned_channels = True
            return Step(acks=[token])
        samples = np.frombuffer(frame.pcm, dtype="<i2").reshape(-1, frame.channels)
        ticket = self._ticket(token)
        step: Step[Token] = Step()
        for channel, session in enumerate(self.channels):
            mono = frame.model_copy(update={"channels": 1, "pcm": samples[:, channel].tobytes()})
            self._merge(step, channel, session.on_frame(mono, ticket))
        self._finish_end(step)
        return step

    def on_start(self, control: SessionControl, token: Token) -> Step[Token]:
        """Each channel takes the options; the call's checkpoint is stored (a takeover must know it is a call)."""
        ticket = self._ticket(token)
        step: Step[Token] = Step()
        for channel, session in enumerate(self.channels):
            own = session.on_start(control, ticket)  # its own checkpoint is folded into the call's below
            self._merge(step, channel, Step(acks=own.acks))
        step.actions.append(Store(self.checkpoint()))
        return step

    def on_end(self, control: SessionControl, token: Token) -> Step[Token]:
        ticket = self._ticket(token)
        step: Step[Token] = Step()
        for channel, session in enumerate(self.channels):
            self._merge(step, channel, session.on_end(control, ticket))
        self._finish_end(step)
        return step

    def release_all(self) -> list[Token]:
        """Every held record (a session given up as abandoned)."""
        for session in self.channels:
            session.release_all()
        tokens = [token for token, _holders in self.waiting.values()]
        self.waiting.clear()
        return tokens

    def _ticket(self, token: Token) -> int:
        ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
        self.waiting[ticket] = (token, len(self.channels))
        return ticket

    def _merge(self, step: Step[Token], channel: int, own: Step[int]) -> None:
        """One channel's step as the call's: records renumbered and tagged, its checkpoint folded into the call's,
        its session.ended kept for `_finish_end`, and an input record acked once no channel holds it."""
        for action in own.actions:
            if isinstance(action, Send) and isinstance(action.record, SessionEnded):
                self._ended_counts[channel] = action.record.utterances
                self._ended_record = action.record
            elif isinstance(action, Send):
                step.actions.append(Send(action.topic, self._tagged(action.record, channel)))
            elif action.checkpoint is not None:
                cut = action.checkpoint
                position = ChannelPosition(next_index=cut.next_utterance_seq, resume_sample=cut.resume_sample)
                self.positions[channel] = position
                if not self.channels[channel].ended:
                    step.actions.append(Store(self.checkpoint()))
        for ticket in own.acks:
            token, holders = self.waiting[ticket]
            if holders > 1:
                self.waiting[ticket] = (token, holders - 1)
            else:
                del self.waiting[ticket]
                step.acks.append(token)

    def _tagged(self, record: Record, channel: int) -> Record:
        update: dict[str, object] = {"channel": channel, "role": self.roles[channel]}
        seq = getattr(record, "utterance_seq", None)
        if seq is not None:
            update["utterance_seq"] = call_utterance_seq(seq, channel, len(self.channels))
        return record.model_copy(update=update)

    def _finish_end(self, step: Step[Token]) -> None:
        """Once every channel has ended: the call's session.ended and its last checkpoint (kept only for a
        disconnect, which the client may resume), before the acks the channels gave."""
        if self.ended or len(self._ended_counts) < len(self.channels) or self._ended_record is None:
            return
        self.ended = True
        counts = [self._ended_counts[channel] for channel in range(len(self.channels))]
        ended = self._ended_record.model_copy(
            update={"utterances": sum(counts), "channel_utterances": counts, "roles": self.roles}
        )
        step.actions += announce_end(ended)
        step.actions.append(Store(self.checkpoint() if ended.reason == "disconnect" else None))
