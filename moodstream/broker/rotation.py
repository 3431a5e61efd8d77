"""The keeper of the stream topics' slots on the embedded broker (see `moodstream.broker.generations`).

It creates every slot topic, and empties the slot of each finished generation once the workers have committed past
its last record, by deleting and re-creating the topic: deleting a topic is the one thing that frees the embedded
broker's memory (tansu also drops the group offsets of a deleted topic, so a restarted worker reads the new one from
its start). A slot that still holds unread records when its next generation is near is left as it is: its records
stay readable, and the memory waits for the next turn.

The checkpoints' slots (`broker.generations.CARRIED`) are emptied the same way, but no group's offsets say when
they are done with: the keeper first copies each session's latest checkpoint that a resume may still need
(written within `carry_ttl_s`, not ended by a tombstone) into the current generation's slot, with its timestamp, and
empties the older slot once the copies are acknowledged. A checkpoint is therefore always in one slot or the other.
The health topic, whose readers want only the latest heartbeats, is emptied outright every few generations.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import aiokafka.client
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTP
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from moodstream.broker.embedded import ensure_topics
from moodstream.broker.generations import CARRIED, SLOTS, SLOTTED, WORKER_GROUP, Generations, parse, slot_name, slot_of
from moodstream.processors.runtime.checkpoints import Written, latest_per_key
from moodstream.schemas.topics import ALL_TOPICS, EVENTS, HEALTH, TRANSCRIPTS, TopicSpec

log = logging.getLogger("moodstream.broker.rotation")

EMBEDDED_ROTATION_S = 60.0
"""Period of the stream topics on the embedded broker: each slot holds about a minute of records, so fetches stay as
fast as on a fresh broker, and a switch costs no rebalance (docs/decisions/0006)."""

LATEST_ONLY = (HEALTH,)
"""Fixed topics whose readers want only the latest records (the gateways read the last heartbeats): emptied outright
once every `LATEST_ONLY_GENERATIONS` generations. Readers notice as they do with a slot (position past the end)."""

LATEST_ONLY_GENERATIONS = 10
"""How many generations a latest-only topic keeps: ten minutes of heartbeats at the embedded period."""

UNREAD_BY_WORKERS = (EVENTS, TRANSCRIPTS)
"""Rotating topics no worker consumes (gateways, analytics and `moodstream tail` read them live): emptied without
waiting."""


def generation_specs(generations: Generations) -> tuple[TopicSpec, ...]:
    """Every topic a deployment needs: without rotation the contract's topics, with it the fixed ones and every slot
    of each rotating one."""
    if not generations.enabled:
        return ALL_TOPICS
    fixed = tuple(spec for spec in ALL_TOPICS if spec not in SLOTTED)
    return fixed + tuple(
        dataclasses.replace(spec, name=slot_name(spec, slot)) for spec in SLOTTED for slot in range(SLOTS)
    )


class MetadataRequestWithoutAutoCreation(aiokafka.client.MetadataRequest):
    """aiokafka's metadata request, asking the broker not to create the topics it names (aiokafka asks it to by
    default). tansu honours the ask with its own partition count (4), so a slot asked for between the keeper's delete
    and create would come back short of partitions. Every topic of the contract is created by `ensure_topics`."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None) -> None:
        super().__init__(topics, False if allow_auto_topic_creation is None else allow_auto_topic_creation)


def refuse_auto_topic_creation() -> None:
    """Make this process's aiokafka clients ask for metadata without auto-creation: process-wide, because aiokafka
    builds the request inside its client. Every process of ours with an aiokafka client (workers, gateways, analytics,
    `moodstream tail`) calls it before it starts one."""
    aiokafka.client.MetadataRequest = MetadataRequestWithoutAutoCreation


def reread_emptied(consumer: AIOKafkaConsumer) -> list[KafkaTP]:
    """Seek every assigned partition whose position is past its end back to its start, and return them: a slot the
    keeper emptied, which tansu does not report (a fetch there just comes back empty). Nothing is written to a slot
    until a period after it was emptied, so a consumer that calls this as it polls always notices first."""
    emptied = []
    for tp in consumer.assignment():
        state = consumer._subscription.subscription.assignment.state_value(tp)  # aiokafka has no public pair
        if state and state.has_valid_position and state.highwater is not None and state.position > state.highwater:
            consumer.seek(tp, 0)
            emptied.append(tp)
    return emptied


def rest_finished(consumer: AIOKafkaConsumer, generations: Generations) -> None:
    """Pause every resting slot partition read to its end, and resume the ones that stopped resting: a paused
    partition drops out of every fetch, and tansu's fetch cost grows with the partitions it scans."""
    paused = consumer.paused()
    resting, waking = [], []
    for tp in consumer.assignment():
        parsed = parse(tp.topic)
        if parsed is None:
            continue
        if generations.resting(parsed[1]):
            state = consumer._subscription.subscription.assignment.state_value(tp)  # aiokafka has no public pair
            if tp not in paused and state and state.has_valid_position and state.highwater is not None:
                if state.position >= state.highwater:
                    resting.append(tp)
        elif tp in paused:
            waking.append(tp)
    if resting:
        consumer.pause(*resting)
    if waking:
        consumer.resume(*waking)


class TopicKeeper:
    """A thread that creates upcoming generations and deletes finished ones; `start()` / `stop()`."""

    def __init__(self, config: dict[str, str], generations: Generations, carry_ttl_s: float) -> None:
        self.config = config
        self.generations = generations
        self.carry_ttl_s = carry_ttl_s
        """How old a checkpoint may be and still be carried forward: the workers' ``Settings.resume_ttl_s``."""
        self.emptied: dict[str, int] = {}
        """Slot topic → the generation it is done with (emptied, or it had no records)."""
        self.freed: list[str] = []
        """Every slot topic emptied of records, in order (a slot once per generation)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-keeper", daemon=True)
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """One admin client for the keeper's life (librdkafka reconnects it): the keeper asks for metadata every
        round, and a client per round cost a connection, its handshake and its own librdkafka threads each time."""
        if self._admin is None:
            self._admin = AdminClient(self.config)
        return self._admin

    def start(self) -> TopicKeeper:
        ensure_topics(self.config, generation_specs(self.generations))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = max(0.5, min(5.0, self.generations.period_s / 10))
        while not self._stop.wait(interval):
            try:
                self.tend()
            except Exception as exc:  # noqa: BLE001 - a broker hiccup: try again next round
                log.warning("topic keeper: %s", exc)

    def tend(self, now_s: float | None = None) -> list[str]:
        """Empty every slot whose generation is done and read; returns the topics emptied."""
        now = time.time() if now_s is None else now_s
        current = self.generations.current(now)
        self._repair(current)
        margin = self.generations.empty_margin_s
        due = [
            (slot_name(spec, generation % SLOTS), spec, generation)
            for generation in (current - 2, current - 1)
            if self.generations.starts_at(generation + 1) + margin
            <= now
            < self.generations.starts_at(generation + SLOTS) - margin
            for spec in SLOTTED
            if self.emptied.get(slot_name(spec, generation % SLOTS)) != generation
        ]
        done = []
        for name, spec, generation in due:
            try:
                if spec in CARRIED:
                    holds, read = self._carry(name, spec, generation + 1, now)
                else:
                    holds, read = self._slot_state(name, spec)
            except KafkaException as exc:  # e.g. offsets unanswered during a rebalance: this slot waits, others go on
                log.warning("topic keeper: %s: %s", name, exc)
                continue
            if not holds:
                self.emptied[name] = generation  # nothing to free
            elif read or spec in UNREAD_BY_WORKERS:
                done.append((name, spec, generation))
        done += self._latest_only_due(current)
        if done:
            self._empty(done)
        return [name for name, _spec, _generation in done]

    def _latest_only_due(self, current: int) -> list[tuple[str, TopicSpec, int]]:
        """The latest-only topics to empty now: once per `LATEST_ONLY_GENERATIONS`, at a generation's start."""
        turn = current // LATEST_ONLY_GENERATIONS
        due = [(spec.name, spec, turn) for spec in LATEST_ONLY if self.emptied.setdefault(spec.name, turn) != turn]
        return due

    def _empty(self, slots: list[tuple[str, TopicSpec, int]]) -> None:
        self._recreate({name: spec for name, spec, _g in slots})
        for name, _spec, generation in slots:
            self.emptied[name] = generation
            self.freed.append(name)
        log.info("emptied %d slot topics of generation %d", len(slots), slots[0][2])

    def _repair(self, current: int) -> None:
        """Re-create every slot topic of a generation not current that lacks partitions (see `_recreate`); the
        current slots are left alone, their records are being written."""
        existing = self.admin.list_topics(timeout=10).topics
        misshapen = {
            spec.name: spec
            for spec in generation_specs(self.generations)
            if (slot := slot_of(spec.name)) is not None
            and slot != current % SLOTS
            and (spec.name not in existing or len(existing[spec.name].partitions) != spec.partitions)
        }
        if misshapen:
            log.warning("topic keeper: %s lack partitions: re-creating them", ", ".join(misshapen))
            self._recreate(misshapen)

    def _recreate(self, specs: dict[str, TopicSpec], attempts: int = 5) -> None:
        """Delete and re-create the topics named, until each has its partition count. A client that asks for a
        topic's metadata between the delete and the create can have tansu create it first with its own default
        count (aiokafka asks for auto-creation in every metadata request); a slot short of partitions would stall the
        sessions of the partitions it lacks, and `ensure_topics` leaves an existing topic as it is."""
        admin = self.admin
        todo = dict(specs)
        for _attempt in range(attempts):
            existing = admin.list_topics(timeout=10).topics
            if doomed := [name for name in todo if name in existing]:
                for future in admin.delete_topics(doomed, operation_timeout=10).values():
                    future.result()
            try:
                ensure_topics(self.config, tuple(dataclasses.replace(spec, name=name) for name, spec in todo.items()))
                return
            except TimeoutError:
                existing = admin.list_topics(timeout=10).topics
                todo = {name: spec for name, spec in todo.items()
                        if name not in existing or len(existing[name].partitions) != spec.partitions}  # fmt: skip
                log.warning("topic keeper: %s came back with the wrong partition count: again", ", ".join(todo))
        raise KafkaException(f"{', '.join(todo)} not re-created with their partition counts")

    def _carry(self, name: str, spec: TopicSpec, into: int, now_s: float) -> tuple[bool, bool]:
        """Copy the slot's latest live record of each key into generation `into`'s slot; (whether the slot held
        records, True: it may be emptied once they are copied)."""
        records = self._read_all(name, spec)
        if not records:
            return False, True
        cutoff = now_s - self.carry_ttl_s
        live = [(key, latest) for key, latest in latest_per_key(record for _p, record in records).items()
                if latest[0] >= cutoff]  # fmt: skip
        partition_of = {record[1] or b"": partition for partition, record in records}
        producer = Producer(self.config | {"enable.idempotence": True})
        target = slot_name(spec, into % SLOTS)
        for key, (written_s, value) in live:
            producer.produce(target, value=value, key=key, partition=partition_of[key], timestamp=int(written_s * 1000))
        if producer.flush(10) > 0:
            raise KafkaException(f"{len(producer)} carried records of {name} not acknowledged")
        log.info("carried %d of %d records of %s into %s", len(live), len(records), name, target)
        return True, True

    def _read_all(self, name: str, spec: TopicSpec) -> list[tuple[int, Written]]:
        """Every record of every partition of `name`, as (partition, record), to the end it had when asked."""
        consumer = Consumer(self.config | {"group.id": "moodstream-keeper", "enable.auto.commit": False})
        try:
            consumer.list_topics(name, timeout=10)
            ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                    for p in range(spec.partitions)}  # fmt: skip
            left = {p for p, end in ends.items() if end > 0}
            consumer.assign([TopicPartition(name, p, 0) for p in left])
            records: list[tuple[int, Written]] = []
            deadline = time.monotonic() + 30
            while left and time.monotonic() < deadline:
                for message in consumer.consume(500, timeout=0.5):
                    if message.error():
                        continue
                    _kind, timestamp_ms = message.timestamp()
                    records.append((message.partition(), (timestamp_ms / 1000, message.key(), message.value())))
                    if message.offset() + 1 >= ends[message.partition()]:
                        left.discard(message.partition())
            if left:
                raise KafkaException(f"{name}: partitions {sorted(left)} not read to their end")
            return records
        finally:
            consumer.close()

    def _slot_state(self, name: str, spec: TopicSpec) -> tuple[bool, bool]:
        """(whether the slot holds records, whether the workers have committed past all of them)."""
        consumer = Consumer(self.config | {"group.id": WORKER_GROUP, "enable.auto.commit": False})
        try:
            consumer.list_topics(name, timeout=10)  # the watermark query needs the topic in the client's metadata
            partitions = [TopicPartition(name, p) for p in range(spec.partitions)]
            ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
            if spec in UNREAD_BY_WORKERS or not any(ends):
                return any(ends), False
            committed = [tp.offset for tp in consumer.committed(partitions, timeout=10)]
            return True, all(end == 0 or c >= end for c, end in zip(committed, ends, strict=True))
        finally:
            consumer.close()
