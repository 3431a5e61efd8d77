"""Per-session state kept in a compacted topic: the audio stage's checkpoints (`moodstream.checkpoints`) and the
fusion stage's tallies (`moodstream.tallies`).

Writes go through the worker's own producer (`StageContext.emit`), so they are flushed before the worker commits the
offsets of the frames they cover. Reads need no Faust table: when the audio stage first needs a partition, this
store reads that partition of the topic from its start to its end offset with a plain consumer of its
own (no group), and from then on keeps it up to date with the worker's own writes. A partition given up is
forgotten and read again if it comes back, so its state is always the last written by any worker.

When topics rotate these topics rotate too (`broker.generations.CARRIED`): a partition is read from each of its
topics, and each session's latest record is the one written last, whichever topic it is in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from moodstream.schemas import SchemaError, decode
from moodstream.schemas.records import Record, SessionCheckpoint, SessionTally
from moodstream.schemas.topics import CHECKPOINTS, TALLIES, TopicSpec
from moodstream.settings import Settings

log = logging.getLogger("moodstream.audio")

READ_FETCH_WAIT_MS = 10
"""Longest one fetch of a checkpoint read waits. tansu answers a connection's requests one at a time and holds a
fetch for its whole wait, so each seek and offset lookup of the read waits behind the fetch in flight, and the
partition's audio waits for the read (decision record 0003, item 7)."""


R = TypeVar("R", bound=Record)
Latest = dict[str, tuple[R, float]]
"""Session id → its latest record and when it was written (Unix seconds)."""

Written = tuple[float, bytes | None, bytes | None]
"""One record of a compacted topic as read: (when it was written, Unix seconds; key; value, None for a tombstone)."""


def latest_per_key(records: Iterable[Written]) -> dict[bytes, tuple[float, bytes]]:
    """Each key's record written last (a tie goes to the later in `records`), with when; a tombstone removes its
    key. Write time, not read order, decides: a checkpoint carried forward into a newer topic keeps its timestamp and
    may land after a newer write there."""
    latest: dict[bytes, tuple[float, bytes]] = {}
    for written, key, value in sorted(records, key=lambda record: record[0]):  # stable: ties keep their order
        if value is None:
            latest.pop(key or b"", None)
        else:
            latest[key or b""] = (written, value)
    return latest


class TopicEmptied(Exception):
    """The rotation emptied a topic while it was being read: the read starts again."""


class SessionStore(Generic[R]):
    """The latest record of each session of the partitions this worker serves, in the compacted topic `spec`. A
    record older than `ttl_s` is forgotten: its session ended by a disconnect and its resume token has expired
    (`resume_ttl_s`)."""

    def __init__(self, settings: Settings, spec: TopicSpec, record_type: type[R]) -> None:
        self.options = settings.aiokafka_config()
        self.ttl_s = settings.resume_ttl_s
        self.generations = settings.generations
        self.spec = spec
        self.record_type = record_type
        self._loads: dict[int, asyncio.Task[Latest[R]]] = {}

    async def get(self, session_id: str, partition: int) -> R | None:
        """The session's record; the first call for a partition waits until that partition has been read."""
        if partition not in self._loads:
            self._loads[partition] = asyncio.create_task(self._read(partition))
        found = (await self._loads[partition]).get(session_id)
        return found[0] if found and time.time() - found[1] <= self.ttl_s else None

    def expire(self, now_s: float | None = None) -> int:
        """Forget every record older than `ttl_s` in the partitions read so far; returns how many."""
        cutoff = (time.time() if now_s is None else now_s) - self.ttl_s
        dropped = 0
        for load in self._loads.values():
            if load.done() and not load.cancelled() and load.exception() is None:
                latest = load.result()
                for session_id in [sid for sid, (_c, written) in latest.items() if written < cutoff]:
                    del latest[session_id]
                    dropped += 1
        return dropped

    async def put(self, session_id: str, partition: int, record: R | None) -> None:
        """Record what this worker just wrote (None: the tombstone it wrote)."""
        if partition not in self._loads:  # written before anything was read here: read the rest first
            await self.get(session_id, partition)
        latest = await self._loads[partition]
        if record is None:
            latest.pop(session_id, None)
        else:
            latest[session_id] = (record, time.time())

    def forget(self, partitions: set[int]) -> None:
        """Drop what is known of `partitions` (a read under way finishes for whoever awaits it, then is dropped)."""
        for partition in partitions:
            self._loads.pop(partition, None)

    async def _read(self, partition: int) -> Latest[R]:
        """The partition's latest records; retried until it succeeds (a broker away now may be back soon, and
        the partition's audio waits for this either way)."""
        delay_s = 0.5
        while True:
            try:
                return await self._read_once(partition)
            except (KafkaError, OSError) as exc:
                log.warning(
                    "reading %s partition %d failed (%s); retrying in %.1f s", self.spec.name, partition, exc, delay_s
                )
                await asyncio.sleep(delay_s)
                delay_s = min(10.0, delay_s * 2)

    async def _read_once(self, partition: int) -> Latest[R]:
        """The records of `partition` in each of its topics, oldest first; read again from the start if the keeper
        empties one meanwhile (what it carried forward is then in the newer one, which a fresh read finds)."""
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False, group_id=None, fetch_max_wait_ms=READ_FETCH_WAIT_MS, **self.options
        )
        await consumer.start()
        try:
            while True:
                try:
                    records: list[Written] = []
                    for name in self.generations.names_oldest_first(self.spec):
                        records += await self._read_partition(consumer, TopicPartition(name, partition))
                    break
                except TopicEmptied as emptied:
                    log.info("topic %s was emptied while read: reading the partition again", emptied)
        finally:
            await consumer.stop()
        latest = self._decode(latest_per_key(records))
        log.info("%s of partition %d read: %d open sessions", self.spec.name, partition, len(latest))
        return latest

    @staticmethod
    async def _read_partition(consumer: AIOKafkaConsumer, tp: TopicPartition) -> list[Written]:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Written] = []
        while await consumer.position(tp) < end:
            batch = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
            records += [(message.timestamp / 1000, message.key, message.value) for message in batch]
            if not batch and (await consumer.end_offsets([tp]))[tp] < end:
                raise TopicEmptied(tp.topic)
        return records

    def _decode(self, latest: dict[bytes, tuple[float, bytes]]) -> Latest[R]:
        decoded: Latest[R] = {}
        for key, (written_s, value) in latest.items():
            session_id = key.decode("utf-8", "replace")
            try:
                decoded[session_id] = (decode(value, (self.record_type,)), written_s)
            except SchemaError as exc:  # not ours to fix here: the session then starts afresh
                log.warning("unreadable %s of session %s skipped: %s", self.record_type.SCHEMA, session_id, exc)
        return decoded


class CheckpointStore(SessionStore[SessionCheckpoint]):
    """The audio stage's checkpoints."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, CHECKPOINTS, SessionCheckpoint)


class TallyStore(SessionStore[SessionTally]):
    """The fusion stage's tallies."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, TALLIES, SessionTally)
