"""Kafka side of the gateway: one producer for audio, one consumer that relays events to the sockets that own them.

The events consumer joins no consumer group: every gateway instance reads every partition of the events topic and
keeps only the records of sessions it holds. That is what lets any instance serve a client that reconnects (resume)
and needs no per-instance topic; its cost, each instance reading all events, is small because events are a few
hundred bytes per utterance, not audio. Each instance also keeps the final results and session ends of the last
``resume_window_s`` (it starts reading that far back), so a client resuming on it gets what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import KafkaError, Producer

from moodstream.broker.fetch_pacer import FETCHER_TURN_MS, FetchPacer
from moodstream.broker.rotation import refuse_auto_topic_creation, reread_emptied, rest_finished
from moodstream.gateway import metrics
from moodstream.schemas import SchemaError, decode, is_schema
from moodstream.schemas.records import BY_SCHEMA, FusedResult, Record, SessionEnded, SessionSummary, WorkerHeartbeat
from moodstream.schemas.topics import AUDIO, EVENTS, HEALTH
from moodstream.settings import Settings

log = logging.getLogger("moodstream.gateway")

EVENT_TYPES = tuple(BY_SCHEMA[name] for name in EVENTS.schemas)
Subscriber = Callable[[Record], None]
# What a resuming client may have missed: kept for `resume_window_s` by every instance.
REPLAYED = (FusedResult, SessionEnded, SessionSummary)


@dataclass
class WorkerSeen:
    partitions: frozenset[int]
    seen_at: float


class KafkaBridge:
    """The audio producer (librdkafka, on its own thread) and the events consumer (aiokafka, a task on the gateway's
    loop: librdkafka crashes when a topic it has read is deleted, which the rotation's keeper does to topics)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[str, dict[str, Subscriber]] = {}
        """session id → connection id → callback: a session taken over briefly has two connections here."""
        self._recent: dict[str, deque[tuple[float, Record]]] = {}
        self._recent_lock = threading.Lock()
        self._next_prune = 0.0
        self._workers: dict[str, WorkerSeen] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.broker_ok = False
        self.consumer_assigned = False
        self._events_task: asyncio.Task[None] | None = None
        self._events_consumer: AIOKafkaConsumer | None = None
        self._events_done = threading.Event()
        self._pacer = FetchPacer(settings.kafka_relay_fetch_wait_ms, settings.kafka_rest_fetch_wait_ms,
                                 last_record_at=time.monotonic())  # fmt: skip
        base = settings.kafka_config()
        self.producer = Producer(
            base
            | {
                # Audio must not wait for a batch to fill: 1 ms of linger (2 ms measured p50 ack 3.0 ms, 1 ms 2.0 ms).
                "linger.ms": 1,
                # Same key → partition mapping as the Java client and Faust/aiokafka (murmur2), so a session's
                # audio and everything the workers derive from it share a partition number.
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "none",
                "queue.buffering.max.kbytes": 65536,
                "message.timeout.ms": 30000,
                "error_cb": self._on_kafka_error,
            }
        )

    # lifecycle ---------------------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the producer's thread and the events consumer's task on `loop` (call it from that loop)."""
        refuse_auto_topic_creation()
        self._loop = loop
        thread = threading.Thread(target=self._producer_loop, name="kafka-producer", daemon=True)
        thread.start()
        self._threads.append(thread)
        self._events_task = loop.create_task(self._consume_events())

    def stop(self) -> None:
        """Stop both (from any thread but the loop's: it waits for the consumer's task to close)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.producer.flush(5)
        self._events_done.wait(5)

    # producing ---------------------------------------------------------------------------------------------------
    def produce(self, topic: str, key: str, value: bytes) -> None:
        """Queue a record; raises BufferError when the local queue is full (the caller throttles the client)."""
        sent_at = time.perf_counter()

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is None:
                metrics.ACK_SECONDS.observe(time.perf_counter() - sent_at)
                self.broker_ok = True
            else:
                metrics.PRODUCE_ERRORS.inc()
                log.warning("a record for %s was not delivered: %s", topic, err)

        self.producer.produce(topic, value=value, key=key.encode(), on_delivery=delivered)

    # routing -----------------------------------------------------------------------------------------------------
    def subscribe(self, session_id: str, connection_id: str, callback: Subscriber, replay: bool = False) -> None:
        """Route the session's events to ``callback`` (beside any other connection of the session's until it leaves);
        with ``replay``, first the kept final results and ends."""
        self._subscribers.setdefault(session_id, {})[connection_id] = callback
        # a session's results come within seconds: the fetch after the one in flight uses the short wait
        self._pacer.wake(time.monotonic())
        self._pace_fetches(got_records=False)
        if replay:
            with self._recent_lock:
                kept = [record for _at, record in self._recent.get(session_id, ())]
            for record in kept:  # a record also arriving live now is dropped by the session's identity check
                callback(record)

    def _keep(self, session_id: str, record: Record) -> None:
        now = time.monotonic()
        horizon = now - self.settings.resume_window_s
        with self._recent_lock:
            kept = self._recent.setdefault(session_id, deque())
            kept.append((now, record))
            while kept[0][0] < horizon:  # a live session's older results: past the replay window
                kept.popleft()
            if now >= self._next_prune:  # a sweep over all sessions, at most once a second, not per record
                self._next_prune = now + 1.0
                for sid in [sid for sid, kept in self._recent.items() if kept[-1][0] < horizon]:
                    del self._recent[sid]

    def is_subscribed(self, session_id: str, connection_id: str) -> bool:
        return connection_id in self._subscribers.get(session_id, {})

    def unsubscribe(self, session_id: str, connection_id: str) -> None:
        connections = self._subscribers.get(session_id, {})
        connections.pop(connection_id, None)
        if not connections:
            self._subscribers.pop(session_id, None)

    # readiness ---------------------------------------------------------------------------------------------------
    def live_workers(self) -> dict[str, frozenset[int]]:
        """Workers with a recent heartbeat and the audio partitions each owns."""
        cutoff = time.monotonic() - self.settings.worker_stale_s
        return {worker: seen.partitions for worker, seen in list(self._workers.items()) if seen.seen_at >= cutoff}

    def workers_ready(self) -> bool:
        """Live workers own every partition of the audio topic between them."""
        owned: set[int] = set().union(*self.live_workers().values())
        return owned >= set(range(AUDIO.partitions))

    def readiness(self) -> dict[str, bool]:
        return {
            "broker": self.broker_ok,
            "events_consumer": self.consumer_assigned,
            "workers": self.workers_ready(),
        }

    @property
    def ready(self) -> bool:
        return all(self.readiness().values())

    # threads -----------------------------------------------------------------------------------------------------
    def _on_kafka_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if self.broker_ok:
                log.warning("broker unreachable: %s", err)
            self.broker_ok = False

    def _producer_loop(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            # poll returns as soon as a delivery report or error is queued; its timeout only bounds how late the
            # loop sees `stop()` and runs the check below, so at rest it sleeps instead of turning 20 times a second
            self.producer.poll(0.5)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 2.0
                try:
                    self.producer.list_topics(HEALTH.name, timeout=2.0)
                    self.broker_ok = True
                except Exception as exc:  # noqa: BLE001 - any failure to reach the broker means it is unreachable
                    if self.broker_ok:
                        log.warning("broker metadata check failed: %s", exc)
                    self.broker_ok = False

    async def _consume_events(self) -> None:
        """The events consumer (aiokafka, no group) on the gateway's loop, until `stop()`."""
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_config(), enable_auto_commit=False,
                                    fetch_max_wait_ms=self.settings.kafka_relay_fetch_wait_ms,
                                    consumer_timeout_ms=FETCHER_TURN_MS, auto_offset_reset="earliest")  # fmt: skip
        started = False
        try:
            while not self._stop.is_set() and not self.consumer_assigned:
                try:
                    if not started:
                        await consumer.start()
                        started = True
                    await self._assign(consumer)
                except Exception as exc:  # noqa: BLE001 - broker not up yet: retry
                    log.info("events consumer waiting for the broker: %s", exc)
                    await asyncio.sleep(1.0)
            self._events_consumer = consumer
            while not self._stop.is_set():
                await self._relay(consumer)
        finally:
            self._events_consumer = None
            await consumer.stop()
            self._events_done.set()

    async def _relay(self, consumer: AIOKafkaConsumer) -> None:
        try:
            # returns as soon as records come; the timeout is how often an empty turn checks stop() and rotation
            batches = await consumer.getmany(timeout_ms=1000)
        except Exception as exc:  # noqa: BLE001 - a broker outage: aiokafka reconnects, we keep asking
            log.warning("events consumer: %s", exc)
            await asyncio.sleep(0.5)
            return
        events = 0
        for messages in batches.values():
            for message in messages:
                events += message.topic != HEALTH.name  # heartbeats come every few seconds at rest too
                self._on_event(message.topic, message.key, message.value)
        self._pace_fetches(got_records=events > 0)
        if self.settings.generations.enabled:
            for tp in reread_emptied(consumer):
                log.info("%s[%d] was emptied: reading it from the start", tp.topic, tp.partition)
            rest_finished(consumer, self.settings.generations)

    def _pace_fetches(self, got_records: bool) -> None:
        """Set the events consumer's fetch wait from the pacer (on the loop the consumer runs on)."""
        fetcher = getattr(self._events_consumer, "_fetcher", None)
        if fetcher is not None:  # read as each fetch request is built
            fetcher._fetch_max_wait_ms = self._pacer.wait_ms(time.monotonic(), got_records)

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        """Assign every events partition (each rotating topic's, when topics rotate) from ``resume_window_s`` back and
        health near its end."""
        events = [TopicPartition(name, p) for name in self.settings.generations.names(EVENTS)
                  for p in range(EVENTS.partitions)]  # fmt: skip
        health = [TopicPartition(HEALTH.name, p) for p in range(HEALTH.partitions)]
        consumer.assign(events + health)
        since_ms = int((time.time() - self.settings.resume_window_s) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(events, since_ms))
        ends = await consumer.end_offsets(events + health)
        for tp in events:
            consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])
        for tp in health:
            consumer.seek(tp, max(0, ends[tp] - 50))  # who is alive
        self.consumer_assigned = True

    def _on_event(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if topic == HEALTH.name:
            self._on_heartbeat(value or b"")
            return
        session_id = (key or b"").decode("utf-8", "replace")
        raw = value or b""
        callbacks = list(self._subscribers.get(session_id, {}).values())
        keep = any(is_schema(raw, kind) for kind in REPLAYED)
        if not callbacks and not keep:
            return
        try:
            record = decode(raw, EVENT_TYPES)
        except SchemaError as exc:
            metrics.BAD_EVENTS.inc()
            log.warning("undecodable event for session %s: %s", session_id, exc)
            return
        if isinstance(record, SessionEnded | SessionSummary) or (isinstance(record, FusedResult) and record.final):
            self._keep(session_id, record)
        for callback in callbacks:
            callback(record)

    def _on_heartbeat(self, raw: bytes) -> None:
        try:
            beat = decode(raw, (WorkerHeartbeat,))
        except SchemaError as exc:
            log.warning("unreadable worker heartbeat ignored: %s", exc)
            return
        age_s = max(0.0, time.time() - beat.at_ms / 1000)
        self._workers[beat.worker_id] = WorkerSeen(frozenset(beat.audio_partitions), time.monotonic() - age_s)
        metrics.WORKER_FINALS.labels(worker=beat.worker_id).set(beat.finals)
        metrics.WORKER_FINALS_HURRIED.labels(worker=beat.worker_id).set(beat.finals_hurried)
        gone = time.monotonic() - 10 * self.settings.worker_stale_s  # restarted workers: new ids, old ones never beat
        for worker in [w for w, seen in self._workers.items() if seen.seen_at < gone]:
            del self._workers[worker]
            for gauge in (metrics.WORKER_FINALS, metrics.WORKER_FINALS_HURRIED):
                gauge.remove(worker)
