"""The ``/ws/analyze`` protocol: JSON text messages from the client (binary frames are raw PCM).

Server-to-client messages are the ``type``-tagged records of the events topic (schemas.records) plus the few
defined here that only the gateway emits.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter

from moodstream.schemas.records import SessionOptions


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StartMessage(ClientMessage):
    """Optional first message: declares the audio format and session options."""

    type: Literal["start"]
    sample_rate: StrictInt = 16_000
    """Must be 16000 (a number: "16000" is refused)."""
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    resume_token: str | None = None
    """Token from an earlier ``session.started`` to continue that session after a reconnect."""
    resume_from_sample: Annotated[int, Field(ge=0)] = 0
    """With ``resume_token``: session sample index of the first frame this connection sends (resend what may not
    have arrived; samples the server already has are skipped)."""
    delivered_utterances: list[Annotated[int, Field(ge=0)]] = []
    """With ``resume_token``: utterance seqs whose final result the client already has (they are not sent again)."""
    options: SessionOptions = SessionOptions()


class EndMessage(ClientMessage):
    """Finish the open utterance, deliver its result, then close."""

    type: Literal["end"]


class PingMessage(ClientMessage):
    """Liveness check; answered with ``pong``."""

    type: Literal["ping"]


AnyClientMessage = Annotated[StartMessage | EndMessage | PingMessage, Field(discriminator="type")]
CLIENT_MESSAGE = TypeAdapter(AnyClientMessage)


class SessionStarted(BaseModel):
    """First server message of every session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["session.started"] = "session.started"
    session_id: str
    resume_token: str
    sample_rate: int = 16_000
    max_frame_ms: int
    """Largest frame the gateway accepts."""
    resumed: bool = False
    """True when this connection continues an earlier one (final results it missed follow)."""
    max_realtime_factor: float
    """Admitted audio rate, × real time, once the burst is spent: a client sending faster gets a `too_fast` warning."""
    burst_s: float
    """Seconds of audio a connection may send at once before the rate applies."""
    max_ahead_s: float
    """How far ahead of the admitted rate the audio may get before the session is closed with `too_fast`."""


class Pong(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pong"] = "pong"


class ErrorMessage(BaseModel):
    """An error sent by the gateway itself (codes in schemas.errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool = False
