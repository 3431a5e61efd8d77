"""Every override of faust-streaming and aiokafka internals the worker needs, in one place.

Each class below reaches into private attributes of faust-streaming 0.15.3 (and the aiokafka it pins); importing
this module under another version fails at once rather than misbehaving quietly. The embedded broker's rotation is
followed by `moodstream.broker.consumer_order.RotationOrder`, mixed into the consumer here (so checked here too).
`install(app, settings)` applies them to one app: nothing here changes Faust's classes for other apps in the process.
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import version
from typing import Any

import faust
from faust.tables import TableManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

from moodstream.broker.consumer_order import RotationOrder
from moodstream.broker.fetch_pacer import FETCHER_TURN_MS, FetchPacer
from moodstream.broker.generations import is_topic
from moodstream.schemas.topics import AUDIO
from moodstream.settings import Settings

log = logging.getLogger("moodstream.worker")

WRITTEN_FOR = "0.15.3"
"""The faust-streaming release these overrides were written and tested against."""

if version("faust-streaming") != WRITTEN_FOR:
    raise ImportError(
        f"moodstream.processors.runtime.faust_overrides was written against faust-streaming {WRITTEN_FOR}, "
        f"found {version('faust-streaming')}: check each override against the new release, then update WRITTEN_FOR"
    )


class NoDelayTableManager(TableManager):
    """Faust's table manager without its fixed 1 s sleep before it starts: the worker declares no tables (session
    checkpoints are read by `processors.runtime.checkpoints`), so the sleep would only delay the group join."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class ShortFetchConsumerThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer with a short fetch wait. Faust hard-codes 1.5 s; a broker that holds an empty fetch
    for the whole wait (tansu does) then adds up to that much to every hop of the pipeline. Measured with
    `moodstream bench load`: docs/decisions/0003-whole-stack-latency.md. Its fetch routine turns at most every
    `FETCHER_TURN_MS` when nothing wakes it."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # both read when the consumer starts its fetcher
        consumer._fetch_max_wait_ms = self.consumer.fetch_wait_ms
        consumer._consumer_timeout = FETCHER_TURN_MS / 1000
        return consumer


class AudioOnlyAtRest:
    """A fetcher's partitions as it builds each fetch request: all of them, or while the worker rests only the audio
    topic's (every generation's), with all of them again every `full_every_s`. In a stack every other topic a worker
    reads is written by workers from audio, so with no audio none gets a record, and the audio partitions' first
    record ends the rest; the full fetches bound the delay of a record some other producer writes there (a tool, a
    test). tansu reads every partition a fetch names several times a wait, so at rest this is most of the broker's
    work for a worker: the audio topic is one in six of the partitions it reads."""

    full_every_s: float = 5.0

    def __init__(self, fetcher: Any) -> None:
        self.fetcher = fetcher
        self.resting = False
        """Set from the consumer's loop as each batch returns (a bool: safe to read from the fetcher's thread)."""
        self._full_at = 0.0
        self._build = fetcher._get_actions_per_node
        fetcher._get_actions_per_node = self._actions_per_node

    def _actions_per_node(self, assignment: Any) -> Any:
        now = time.monotonic()
        full = not self.resting or now - self._full_at >= self.full_every_s
        actions = self._build(assignment if full else _AudioPartitions(assignment))
        if full and actions[0]:  # a request was built (none while one is in flight to the broker)
            self._full_at = now
        return actions


class _AudioPartitions:
    """An aiokafka assignment seen through: only the audio topic's partitions."""

    def __init__(self, assignment: Any) -> None:
        self._assignment = assignment

    @property
    def tps(self) -> set[Any]:
        return {tp for tp in self._assignment.tps if is_topic(tp.topic, AUDIO)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._assignment, name)


class ShortFetchConsumer(RotationOrder, Consumer):
    """Faust's consumer with the short fetch wait, and two guarantees Faust's own lacks
    (docs/decisions/0001-no-record-lost-on-a-rebalance.md):

    - No record fetched before a seek is handed out after it: Faust seeks partitions back to their committed offsets on
      a rebalance while a batch from the old position may still be in flight, and a record delivered from it moves the
      read offset past the re-read, which is then dropped. Such a batch is cut at its first record after the seek, the
      agents' queues are cleared, and every partition seeks to its committed offset again; what follows comes once
      more, which the idempotent stages absorb.
    - No commit passes the record at the committed offset while that record is unacked.
    - With rotating topics, records come in the order the rotation needs (`moodstream.broker.consumer_order`)."""

    fetch_wait_ms: int = 40
    """Longest a fetch waits; `install` sets it from ``Settings.kafka_fetch_wait_ms`` in a subclass per app."""
    rest_fetch_wait_ms: int = 1000
    """The fetch wait once no record came for a while (`FetchPacer`); from ``Settings.kafka_rest_fetch_wait_ms``."""
    _seek_epoch: int = 0
    _batch_epoch: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._pacer = FetchPacer(self.fetch_wait_ms, self.rest_fetch_wait_ms, last_record_at=time.monotonic())
        self._rest_filter: AudioOnlyAtRest | None = None

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def wake(self) -> None:
        """Fetch every partition again at once, and rest only after `rest_after_s` more without a record: a stage
        sent something (what comes of it may arrive on any topic) or a rebalance assigned partitions."""
        self._pacer.wake(time.monotonic())
        if self._rest_filter is not None:
            self._rest_filter.resting = False

    async def perform_seek(self) -> None:
        # every rebalance seeks: partitions just assigned may hold records of any topic, so no rest until they are read
        self.wake()
        # counted on both sides of the await: a batch returned while the seek runs may still be from the old position
        self._seek_epoch += 1
        await super().perform_seek()
        self._seek_epoch += 1

    async def verify_all_partitions_active(self) -> None:
        """Faust's livelock check (every 2.5 commit intervals) in one pass. Faust yields to the loop before each
        assigned partition through a zero-second timed wait (a task, its cancellation and a TimeoutError): with
        every slot of every topic a worker reads, a few hundred loop turns each time, the most frequent thing a
        resting worker does. The check itself reads a few timestamps per partition."""
        now = time.monotonic()
        for tp in self.assignment():
            if self.should_stop:
                return
            self.verify_event_path(now, tp)

    def _new_offset(self, tp: Any) -> int | None:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        # Faust's head-gap check (`min(acked) - committed > 1`) lets a commit pass over the one record at the
        # committed offset (the next to read) when it was never acked but the next one was: that record was lost.
        if acked and committed is not None and min(acked) > committed and not self._gap[tp].overlaps(committed):
            return None
        return Consumer._new_offset(self, tp)

    async def _wait_next_records(self, timeout: float) -> Any:
        if self.generations.enabled:
            await self._follow_rotation()
        records, active_partitions = await super()._wait_next_records(timeout)
        self._batch_epoch = self._seek_epoch
        fetcher = getattr(self._thread._ensure_consumer(), "_fetcher", None)
        if fetcher is not None:  # read as each fetch request is built (an int: safe to set from this thread)
            now = time.monotonic()
            fetcher._fetch_max_wait_ms = self._pacer.wait_ms(now, bool(records))
            if self._rest_filter is None or self._rest_filter.fetcher is not fetcher:  # a new aiokafka consumer
                self._rest_filter = AudioOnlyAtRest(fetcher)
            self._rest_filter.resting = self._pacer.resting(now)
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


def install(app: faust.App, settings: Settings) -> None:
    """Use the short-fetch consumer for this app's transport only (an attribute of its transport instance)."""
    wait = {
        "fetch_wait_ms": settings.kafka_fetch_wait_ms,
        "rest_fetch_wait_ms": settings.kafka_rest_fetch_wait_ms,
        "generations": settings.generations,
        "peek_options": settings.aiokafka_config(),
    }
    app.transport.Consumer = type("AppShortFetchConsumer", (ShortFetchConsumer,), wait)
    # Faust batches subscription changes for 45 s before it resubscribes; a worker's agents subscribe while it starts,
    # so with the default its group can rebalance once more ~45 s after it began consuming, mid-stream.
    # 2 s keeps that rejoin inside startup.
    app.topics._resubscribe_sleep_lock_seconds = 2.0
