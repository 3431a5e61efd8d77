"""The processor worker: a Faust app whose agents decode records, call the stage cores, encode and send.

Every record is validated on the way in; one that fails validation, or whose processing raises, goes to the
dead-letter topic and the agent moves on, so bad input never kills a worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import faust

from moodstream.settings import Settings
from processors.level import LevelMeter
from schemas import SchemaError, decode, encode
from schemas.records import AudioFrame, AudioLevel, DeadLetter, Record, SessionControl, SessionEnded, WorkerHeartbeat
from schemas.topics import AUDIO, DEAD_LETTER, EVENTS, HEALTH

log = logging.getLogger("moodstream.worker")

APP_ID = "moodstream-processors"


def now_ms() -> float:
    return time.time() * 1000.0


def faust_broker_url(settings: Settings) -> str:
    servers = (settings.kafka_bootstrap_servers or "").split(",")
    return ";".join(f"kafka://{s.strip()}" for s in servers if s.strip())


def faust_credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    import ssl

    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if "SSL" in protocol else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


@dataclass
class SessionState:
    """What the audio stage keeps per session on this worker."""

    meter: LevelMeter
    last_seen: float = field(default_factory=time.monotonic)
    samples: int = 0


def create_app(settings: Settings) -> faust.App:
    """Build the worker app with every stage registered."""
    app = faust.App(
        APP_ID,
        broker=faust_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=AUDIO.partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        broker_rebalance_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.002,
        web_enabled=False,
        store="memory://",
    )
    audio_topic = app.topic(AUDIO.name, partitions=AUDIO.partitions)
    events_topic = app.topic(EVENTS.name, partitions=EVENTS.partitions)
    health_topic = app.topic(HEALTH.name, partitions=HEALTH.partitions)
    dead_letter_topic = app.topic(DEAD_LETTER.name, partitions=DEAD_LETTER.partitions)

    async def dead_letter(event: faust.EventT, consumer: str, error: Exception) -> None:
        message = event.message
        key = message.key.decode("utf-8", "replace") if isinstance(message.key, bytes) else None
        log.warning("dead-lettering %s[%s]@%s: %s", message.topic, message.partition, message.offset, error)
        record = DeadLetter(
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=key,
            error=str(error)[:2000],
            consumer=consumer,
            at_ms=now_ms(),
            value=bytes(message.value or b"")[:1_000_000],
        )
        await dead_letter_topic.send(key=message.topic.encode(), value=encode(record))

    async def emit(topic: faust.TopicT, record: Record, session_id: str) -> None:
        await topic.send(key=session_id.encode(), value=encode(record))

    sessions: dict[str, SessionState] = {}

    @app.agent(audio_topic, name="audio-level")
    async def audio_level(stream: faust.StreamT) -> None:
        """Audio frames in; a level event per window and session.ended out."""
        async for event in stream.events():
            try:
                record = decode(event.value, (AudioFrame, SessionControl))
            except SchemaError as exc:
                await dead_letter(event, "audio-level", exc)
                continue
            try:
                await handle_audio(record)
            except Exception as exc:
                log.exception("audio-level failed on session %s", getattr(record, "session_id", "?"))
                await dead_letter(event, "audio-level", exc)

    async def handle_audio(record: AudioFrame | SessionControl) -> None:
        sid = record.session_id
        if isinstance(record, SessionControl):
            if record.action == "start":
                sessions[sid] = SessionState(LevelMeter(settings.level_window_ms))
                return
            state = sessions.pop(sid, None)
            if state is not None:
                reading = state.meter.flush()
                if reading is not None:
                    await emit(events_topic, AudioLevel(session_id=sid, **reading.__dict__), sid)
            duration = (state.samples if state else 0) / 16.0
            await emit(
                events_topic,
                SessionEnded(session_id=sid, utterances=0, reason=record.reason, duration_ms=duration),
                sid,
            )
            return
        state = sessions.get(sid)
        if state is None:  # frames of a session whose start this worker did not see (rebalance): adopt it
            state = sessions[sid] = SessionState(LevelMeter(settings.level_window_ms))
        state.last_seen = time.monotonic()
        state.samples = record.start_sample + len(record.pcm) // 2
        for reading in state.meter.feed(record.pcm, record.start_sample):
            await emit(events_topic, AudioLevel(session_id=sid, **reading.__dict__), sid)

    @app.timer(interval=settings.worker_heartbeat_s)
    async def heartbeat() -> None:
        assignment = app.consumer.assignment() if app.consumer else set()
        partitions = sorted(tp.partition for tp in assignment if tp.topic == AUDIO.name)
        beat = WorkerHeartbeat(worker_id=settings.instance_id, audio_partitions=partitions, at_ms=now_ms())
        await health_topic.send(key=settings.instance_id.encode(), value=encode(beat))

    @app.timer(interval=30.0)
    async def expire_idle_sessions() -> None:
        # A session whose end never came (its gateway died) is dropped after a few idle timeouts.
        cutoff = time.monotonic() - 4 * settings.idle_timeout_s
        for sid in [s for s, st in sessions.items() if st.last_seen < cutoff]:
            sessions.pop(sid, None)

    return app


def run_worker(settings: Settings, extra_args: Iterable[str] = ()) -> None:
    """Run one worker process until SIGINT/SIGTERM."""
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, override_logging=False)
    worker.execute_from_commandline()
