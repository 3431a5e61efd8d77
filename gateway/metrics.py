"""Prometheus metrics of the gateway (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SESSIONS = Gauge("moodstream_gateway_sessions", "Open WebSocket sessions")
SESSIONS_TOTAL = Counter("moodstream_gateway_sessions_accepted", "Sessions accepted")
REJECTED = Counter("moodstream_gateway_rejected_total", "Sessions refused or ended with an error", ["code"])
FRAMES = Counter("moodstream_gateway_frames_total", "Audio frames received")
AUDIO_BYTES = Counter("moodstream_gateway_audio_bytes_total", "Audio bytes received")
EVENTS_SENT = Counter("moodstream_gateway_events_sent_total", "Messages sent to clients", ["type"])
RESUMED = Counter("moodstream_gateway_sessions_resumed_total", "Sessions continued after a reconnect")
DUPLICATES_DROPPED = Counter("moodstream_gateway_duplicates_dropped_total", "Replayed results not re-sent")
PRODUCE_ERRORS = Counter("moodstream_gateway_produce_errors_total", "Records Kafka failed to accept")
BAD_EVENTS = Counter("moodstream_gateway_bad_events_total", "Undecodable records on the events topic")
WARNINGS = Counter("moodstream_gateway_warnings_total", "Errors sent that did not end the session", ["code"])
QUEUE_DEPTH = Gauge("moodstream_gateway_producer_queue", "Records waiting in the producer queue")
ACK_SECONDS = Histogram(
    "moodstream_gateway_frame_ack_seconds",
    "Record (joined audio frames or session control) publish to broker acknowledgement",
    buckets=(0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
E2E_SECONDS = Histogram(
    "moodstream_gateway_utterance_e2e_seconds",
    "Last frame of an utterance received to its result sent",
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0),
)
WORKER_FINALS = Gauge(
    "moodstream_worker_finals", "Finals a worker's ASR started since the worker started (its heartbeats)", ["worker"]
)
WORKER_FINALS_HURRIED = Gauge(
    "moodstream_worker_finals_hurried",
    "Of a worker's finals, those decoded greedily because others waited behind them (MOODSTREAM_ASR_CATCH_UP): a "
    "share that grows says the workers run near capacity",
    ["worker"],
)
