"""Error codes a client can receive: as an ``error`` message, and for fatal ones as the WebSocket close code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """One documented error."""

    code: str
    """Stable machine-readable name, sent as ``error.code``."""
    close_code: int | None
    """WebSocket close code when the error ends the session; None when the session goes on."""
    meaning: str
    """What happened and what the client should do."""


BAD_MESSAGE = ErrorCode("bad_message", None, "A text frame was not JSON or had an unknown type; it was ignored.")
ODD_FRAME = ErrorCode(
    "odd_frame", None, "A binary frame had an odd byte count (not whole int16 samples); it was dropped."
)
FRAME_TOO_LARGE = ErrorCode(
    "frame_too_large", 1009, "A binary frame exceeded the maximum frame size (200 ms by default)."
)
BAD_START = ErrorCode(
    "bad_start", 1003, "The start message was invalid, for example a sample_rate other than the number 16000."
)
UNAUTHORIZED = ErrorCode("unauthorized", 1008, "Missing or invalid credentials, or an origin not on the allow-list.")
OVER_CAPACITY = ErrorCode(
    "over_capacity", 1013, "This gateway has reached its session limit; retry later or elsewhere."
)
BROKER_UNAVAILABLE = ErrorCode(
    "broker_unavailable", 1013, "The gateway cannot reach Kafka or no processor is ready; retry later."
)
BAD_RESUME = ErrorCode(
    "bad_resume", 1008, "The resume token was not issued by this service (or its secret changed); start a new session."
)
TOO_FAST = ErrorCode("too_fast", None, "Audio arrives faster than the server accepts; frames were dropped.")
IDLE_TIMEOUT = ErrorCode("idle_timeout", 1000, "No audio for the idle timeout; the session was ended normally.")
MAX_DURATION = ErrorCode("max_duration", 1000, "The session reached its maximum duration and was ended normally.")
INTERNAL = ErrorCode("internal", 1011, "An unexpected server error ended the session.")
PROCESSING_FAILED = ErrorCode(
    "processing_failed",
    None,
    "A worker could not process part of this session's data (it went to the dead-letter topic); a result may be "
    "missing or come from the voice alone. The session goes on.",
)

ALL_ERRORS: tuple[ErrorCode, ...] = (
    BAD_MESSAGE,
    ODD_FRAME,
    FRAME_TOO_LARGE,
    BAD_START,
    UNAUTHORIZED,
    OVER_CAPACITY,
    BROKER_UNAVAILABLE,
    BAD_RESUME,
    TOO_FAST,
    IDLE_TIMEOUT,
    MAX_DURATION,
    INTERNAL,
    PROCESSING_FAILED,
)
