"""The processor worker: a Faust app whose agents decode records, call the stage cores, encode and send.

Every record is validated on the way in; one that fails validation, or whose processing raises, goes to the
dead-letter topic and the agent moves on, so bad input never kills a worker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import faust

from moodstream.settings import Settings
from schemas import SchemaError, decode, encode
from schemas.records import DeadLetter, Record, WorkerHeartbeat
from schemas.topics import AUDIO, DEAD_LETTER, HEALTH, TopicSpec

log = logging.getLogger("moodstream.worker")

R = TypeVar("R", bound=Record)

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
class StageContext:
    """What every stage's agents share: the app, settings, and helpers to send and dead-letter."""

    app: faust.App
    settings: Settings

    def topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.app.topic(spec.name, partitions=spec.partitions)

    async def emit(self, spec: TopicSpec, record: Record, key: str) -> None:
        await self.topic(spec).send(key=key.encode(), value=encode(record))

    async def consume(
        self,
        stream: faust.StreamT,
        expected: type[R],
        name: str,
        compute: Callable[[R], Record],
        pool: Executor,
        send: Callable[[Record], Awaitable[None]],
    ) -> None:
        """The shell of a stateless stage: decode (invalid records are dead-lettered), run `compute` in the
        stage's pool off the event loop, send its result; a record whose processing fails is dead-lettered."""
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            try:
                record = decode(event.value, (expected,))
            except SchemaError as exc:
                await self.dead_letter(event, name, exc)
                continue
            try:
                await send(await loop.run_in_executor(pool, compute, record))
            except Exception as exc:  # one bad record must not stop the partition
                log.exception("%s failed on session %s", name, getattr(record, "session_id", "?"))
                await self.dead_letter(event, name, exc)

    async def dead_letter(self, event: faust.EventT, consumer: str, error: Exception) -> None:
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
        await self.emit(DEAD_LETTER, record, message.topic)


def create_app(settings: Settings) -> faust.App:
    """Build the worker app with every stage registered."""
    from processors import acoustic_stage, asr_stage, audio_stage, fusion_stage, text_stage

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
        table_standby_replicas=0,
    )
    context = StageContext(app, settings)
    models: dict[str, str] = {}
    for stage in (audio_stage, acoustic_stage, asr_stage, text_stage, fusion_stage):
        models |= stage.register(context)

    @app.timer(interval=settings.worker_heartbeat_s)
    async def heartbeat() -> None:
        assignment = app.consumer.assignment() if app.consumer else set()
        partitions = sorted(tp.partition for tp in assignment if tp.topic == AUDIO.name)
        beat = WorkerHeartbeat(
            worker_id=settings.instance_id, audio_partitions=partitions, at_ms=now_ms(), models=models
        )
        await context.emit(HEALTH, beat, settings.instance_id)

    return app


def run_worker(settings: Settings) -> None:
    """Run one worker process until SIGINT/SIGTERM."""
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, override_logging=False)
    worker.execute_from_commandline()
