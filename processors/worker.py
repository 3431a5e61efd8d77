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
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import faust
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

from moodstream.settings import Settings
from schemas import SchemaError, decode, encode
from schemas.records import DeadLetter, Record, WorkerHeartbeat
from schemas.topics import AUDIO, DEAD_LETTER, HEALTH, TopicSpec

log = logging.getLogger("moodstream.worker")

R = TypeVar("R", bound=Record)
T = TypeVar("T")
# What each stage serves, by model: a version string, or a callable giving it once the model has loaded.
ModelVersions = dict[str, "str | Callable[[], str]"]

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


class PromptTableManager(TableManager):
    """Faust's table manager without its fixed 1 s grace before finalizing tables: every table is declared in
    `create_app` before the app starts (declaring one later raises), so the grace would only delay the group join."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class PromptFetchConsumerThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer with a short fetch wait. Faust hard-codes 1.5 s; a broker that holds an empty fetch
    for the whole wait (tansu does) then adds up to that much to every hop of the pipeline. Measured with
    `moodstream bench load`: see README, Performance."""

    fetch_wait_ms: int = 20
    """Set from ``Settings.kafka_fetch_wait_ms`` by `create_app`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_wait_ms  # read when the consumer starts its fetcher
        return consumer


class PromptFetchConsumer(Consumer):
    """Faust's consumer with the short fetch wait, and without delivering records fetched before a seek.

    On a rebalance Faust resumes the flow, unpauses the stream partitions, then seeks them to their committed offsets
    and resets its read offsets. A batch fetched from the old position before or during that seek was still handed
    out after it: the read offset ran ahead, the re-read from the committed offset was dropped as already read, and
    records between were never delivered ("skipped by the consumer" in the audio stage, or an utterance's result
    never sent; instrumented runs of the two-worker takeover test showed both, 2 to 5 runs in 10). Here such a batch
    is cut at its first record after the seek, the agents' queues are cleared, and every partition seeks to its
    committed offset again: whatever follows it comes once more, which the idempotent stages absorb. It also never
    commits past the record at the committed offset while that record is unacked (Faust's own check does)."""

    _seek_epoch: int = 0
    _batch_epoch: int = 0

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return PromptFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        # counted on both sides of the await: a batch returned while the seek runs may still be from the old position
        self._seek_epoch += 1
        await super().perform_seek()
        self._seek_epoch += 1

    def _new_offset(self, tp: Any) -> int | None:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        # Faust's head-gap check (`min(acked) - committed > 1`) lets a commit pass over the one record at the
        # committed offset (the next to read) when it was never acked but the next one was: that record was lost.
        if acked and committed is not None and min(acked) > committed and not self._gap[tp].overlaps(committed):
            return None
        return Consumer._new_offset(self, tp)

    async def _wait_next_records(self, timeout: float) -> Any:
        records, active_partitions = await super()._wait_next_records(timeout)
        self._batch_epoch = self._seek_epoch
        return records, active_partitions

    async def getmany(self, timeout: float) -> Any:
        batch = super().getmany(timeout)
        stale = False
        try:
            async for tp, message in batch:
                if self._seek_epoch != self._batch_epoch:
                    stale = True
                    break
                yield tp, message
        finally:
            await batch.aclose()
        if stale:
            log.info("a batch fetched before the last seek was cut short; seeking to the committed offsets again")
            # what the stale batch already put in the agents' queues would run ahead of the re-read: drop it too
            self.app.flow_control.clear()
            await self.perform_seek()


class Preloaded(Generic[T]):
    """A model loading on a background thread while Faust starts and joins the group; ``get()`` waits for it."""

    _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-load")

    def __init__(self, factory: Callable[[], T]) -> None:
        self.future: Future[T] = self._pool.submit(factory)

    def get(self) -> T:
        return self.future.result()


@dataclass
class StageContext:
    """What every stage's agents share: the app, settings, and helpers to send and dead-letter."""

    app: faust.App
    settings: Settings

    loading: list[Preloaded[Any]] = field(default_factory=list)

    def preload(self, factory: Callable[[], T]) -> Preloaded[T]:
        """Load a model off the startup path (the worker reports ready only once every model has loaded)."""
        model = Preloaded(factory)
        self.loading.append(model)
        return model

    def topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.app.topic(spec.name, partitions=spec.partitions)

    async def emit(self, spec: TopicSpec, record: Record, key: str) -> None:
        await self.topic(spec).send(key=key.encode(), value=encode(record))

    async def each_record(
        self,
        stream: faust.StreamT,
        expected: tuple[type[Record], ...],
        name: str,
        handle: Callable[[faust.EventT, Any], Awaitable[None]],
        *,
        manual_ack: bool = False,
    ) -> None:
        """The one consume loop of every stage: decode and validate each record, call `handle(event, record)`; a
        record that fails validation, or whose handling raises, goes to the dead-letter topic and the loop goes on.
        With `manual_ack` the stream does not ack by itself: `handle` acks (or holds) what it took, and this loop
        acks what it dead-lettered."""
        async for event in stream.events():
            try:
                record = decode(event.value, expected)
            except SchemaError as exc:
                await self._reject(stream, event, name, exc, manual_ack)
                continue
            try:
                await handle(event, record)
            except Exception as exc:  # one bad record must not stop the partition
                log.exception("%s failed on session %s", name, getattr(record, "session_id", "?"))
                await self._reject(stream, event, name, exc, manual_ack)

    async def _reject(
        self, stream: faust.StreamT, event: faust.EventT, name: str, error: Exception, manual_ack: bool
    ) -> None:
        await self.dead_letter(event, name, error)
        if manual_ack:
            await stream.ack(event)

    async def consume(
        self,
        stream: faust.StreamT,
        expected: type[R],
        name: str,
        compute: Callable[[R], Record],
        pool: Executor,
        send: Callable[[Record], Awaitable[None]],
    ) -> None:
        """The shell of a stateless stage: `compute` runs in the stage's pool off the event loop, its result is
        sent; invalid records and failures are dead-lettered (`each_record`)."""
        loop = asyncio.get_running_loop()

        async def handle(_event: faust.EventT, record: R) -> None:
            await send(await loop.run_in_executor(pool, compute, record))

        await self.each_record(stream, (expected,), name, handle)

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

    # Faust picks the consumer class from the kafka:// transport; this worker process uses the prompt-fetch one.
    aiokafka_driver.Transport.Consumer = PromptFetchConsumer
    PromptFetchConsumerThread.fetch_wait_ms = settings.kafka_fetch_wait_ms
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
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_ms / 1000,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        # Stages hold records unacked on purpose (an open utterance's frames, an unfused utterance's scores) and
        # drop that state when their partition is revoked; waiting for those acks would stall every rebalance.
        stream_wait_empty=False,
        producer_linger=0.002,
        web_enabled=False,
        TableManager=PromptTableManager,
        store="memory://",
        table_standby_replicas=0,
    )
    context = StageContext(app, settings)
    versions: ModelVersions = {}
    for stage in (audio_stage, acoustic_stage, asr_stage, text_stage, fusion_stage):
        versions |= stage.register(context)
    models: dict[str, str] = {}

    async def send_heartbeat() -> None:
        if not all(model.future.done() for model in context.loading):
            return  # not ready to serve: gateways count only live heartbeats
        if not models:
            try:
                for model in context.loading:
                    model.get()
            except Exception as exc:  # noqa: BLE001 - whatever the loader raised, the worker cannot serve
                log.critical("a model failed to load: %s", exc)
                await app.crash(exc)  # exits non-zero: a supervisor restarts it or `moodstream up` stops
                return
            models.update({name: v() if callable(v) else v for name, v in versions.items()})
        assignment = app.consumer.assignment() if app.consumer else set()
        partitions = sorted(tp.partition for tp in assignment if tp.topic == AUDIO.name)
        beat = WorkerHeartbeat(
            worker_id=settings.instance_id, audio_partitions=partitions, at_ms=now_ms(), models=models
        )
        await context.emit(HEALTH, beat, settings.instance_id)

    @app.timer(interval=settings.worker_heartbeat_s)
    async def heartbeat() -> None:
        await send_heartbeat()

    async def beat_when_assigned(_app: faust.App, **_kwargs: Any) -> None:
        await send_heartbeat()  # tell gateways at once, not at the next tick

    app.on_rebalance_complete.connect(beat_when_assigned, weak=False)  # a local function: keep a strong reference
    return app


def run_worker(settings: Settings) -> None:
    """Run one worker process until SIGINT/SIGTERM."""
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, override_logging=False)
    worker.execute_from_commandline()
