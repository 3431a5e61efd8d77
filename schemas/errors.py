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


BAD_MESSAGE = ErrorCode(
    "bad_message", None, "After the session started, a text frame was not JSON or had an unknown type; it was ignored."
)
ODD_FRAME = ErrorCode(
    "odd_frame",
    None,
    "A binary frame did not hold whole samples (an odd byte count; in a two-channel session, not a multiple of 4); it "
    "was dropped.",
)
FRAME_TOO_LARGE = ErrorCode(
    "frame_too_large",
    1009,
    "A binary frame exceeded the maximum frame size (200 ms of audio by default) or a text frame 64 KB. A frame over "
    "1 MB is refused by the WebSocket layer itself: close 1009 with no error message.",
)
BAD_START = ErrorCode(
    "bad_start",
    1003,
    "The first text message was not a valid start message (any other text before start, including ping, is this "
    "error), for example a sample_rate other than the number 16000.",
)
START_TIMEOUT = ErrorCode(
    "start_timeout", 1008, "Neither a start message nor audio arrived within the start timeout (10 s by default)."
)
UNAUTHORIZED = ErrorCode("unauthorized", 1008, "Missing or invalid credentials, or an origin not on the allow-list.")
OVER_CAPACITY = ErrorCode(
    "over_capacity", 1013, "This gateway has reached its session limit; retry later or elsewhere."
)
CLIENT_LIMIT = ErrorCode(
    "client_limit",
    1013,
    "This client address holds its limit of open sessions on this gateway (16 by default); end one or retry later.",
)
BROKER_UNAVAILABLE = ErrorCode(
    "broker_unavailable", 1013, "The gateway cannot reach Kafka or no processor is ready; retry later."
)
BAD_RESUME = ErrorCode(
    "bad_resume", 1008, "The resume token was not issued by this service (or its secret changed); start a new session."
)
TOO_FAST = ErrorCode(
    "too_fast",
    1008,
    "Audio arrived further ahead of the admitted rate (max_realtime_factor × real time after a burst of burst_s, both "
    "in session.started) than max_ahead_s: the session was closed. A warning with the same code (not fatal) comes "
    "first, as soon as the client is ahead of the admitted rate at all.",
)
AUDIO_DROPPED = ErrorCode(
    "audio_dropped", None, "The gateway's queue to Kafka was full: a batch of audio was dropped; the session goes on."
)
IDLE_TIMEOUT = ErrorCode(
    "idle_timeout", 1000, "No audio for the idle timeout (pings do not count); the session was ended normally."
)
MAX_DURATION = ErrorCode("max_duration", 1000, "The session reached its maximum duration and was ended normally.")
INTERNAL = ErrorCode("internal", 1011, "An unexpected server error ended the session.")
RESULTS_LATE = ErrorCode(
    "results_late",
    1013,
    "After end, some final results did not come within the grace period: the connection was closed without "
    "session.ended. Resume the session (same token, resend end) to receive them.",
)
TAKEN_OVER = ErrorCode(
    "session_taken_over",
    1008,
    "Another connection resumed this session (with its token), on this gateway or another: this one was closed.",
)
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
    START_TIMEOUT,
    UNAUTHORIZED,
    OVER_CAPACITY,
    CLIENT_LIMIT,
    BROKER_UNAVAILABLE,
    BAD_RESUME,
    TOO_FAST,
    AUDIO_DROPPED,
    IDLE_TIMEOUT,
    MAX_DURATION,
    INTERNAL,
    RESULTS_LATE,
    TAKEN_OVER,
    PROCESSING_FAILED,
)
