"""Session checkpoints of the audio stage, kept in the compacted `moodstream.checkpoints` topic.

Writes go through the worker's own producer (`StageContext.emit`), so they are flushed before the worker commits the
offsets of the frames they cover. Reads need no Faust table: when the audio stage first needs a partition, this
store reads that partition of the checkpoint topic from its start to its end offset with a plain consumer of its
own (no group), and from then on keeps it up to date with the worker's own writes. A partition given up is
forgotten and read again if it comes back, so its state is always the last written by any worker.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from moodstream.settings import Settings
from schemas import SchemaError, decode
from schemas.records import SessionCheckpoint
from schemas.topics import CHECKPOINTS

log = logging.getLogger("moodstream.audio")


Latest = dict[str, tuple[SessionCheckpoint, float]]
"""Session id → its latest checkpoint and when it was written (Unix seconds)."""


class CheckpointStore:
    """The latest checkpoint of each session of the partitions this worker serves. A checkpoint older than
    `ttl_s` is forgotten: its session ended by a disconnect and its resume token has expired (`resume_ttl_s`)."""

    def __init__(self, settings: Settings) -> None:
        self.options = settings.aiokafka_config()
        self.ttl_s = settings.resume_ttl_s
        self._loads: dict[int, asyncio.Task[Latest]] = {}

    async def get(self, session_id: str, partition: int) -> SessionCheckpoint | None:
        """The session's checkpoint; the first call for a partition waits until that partition has been read."""
        if partition not in self._loads:
            self._loads[partition] = asyncio.create_task(self._read(partition))
        found = (await self._loads[partition]).get(session_id)
        return found[0] if found and time.time() - found[1] <= self.ttl_s else None

    def expire(self, now_s: float | None = None) -> int:
        """Forget every checkpoint older than `ttl_s` in the partitions read so far; returns how many."""
        cutoff = (time.time() if now_s is None else now_s) - self.ttl_s
        dropped = 0
        for load in self._loads.values():
            if load.done() and not load.cancelled() and load.exception() is None:
                latest = load.result()
                for session_id in [sid for sid, (_c, written) in latest.items() if written < cutoff]:
                    del latest[session_id]
                    dropped += 1
        return dropped

    async def put(self, session_id: str, partition: int, checkpoint: SessionCheckpoint | None) -> None:
        """Record what this worker just wrote (None: the tombstone it wrote)."""
        if partition not in self._loads:  # written before anything was read here: read the rest first
            await self.get(session_id, partition)
        latest = await self._loads[partition]
        if checkpoint is None:
            latest.pop(session_id, None)
        else:
            latest[session_id] = (checkpoint, time.time())

    def forget(self, partitions: set[int]) -> None:
        """Drop what is known of `partitions` (a read under way finishes for whoever awaits it, then is dropped)."""
        for partition in partitions:
            self._loads.pop(partition, None)

    async def _read(self, partition: int) -> Latest:
        """The partition's latest checkpoints; retried until it succeeds (a broker away now may be back soon, and
        the partition's audio waits for this either way)."""
        delay_s = 0.5
        while True:
            try:
                return await self._read_once(partition)
            except (KafkaError, OSError) as exc:
                log.warning(
                    "reading checkpoints of partition %d failed (%s); retrying in %.1f s", partition, exc, delay_s
                )
                await asyncio.sleep(delay_s)
                delay_s = min(10.0, delay_s * 2)

    async def _read_once(self, partition: int) -> Latest:
        tp = TopicPartition(CHECKPOINTS.name, partition)
        consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **self.options)
        latest: Latest = {}
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    self._apply(latest, message.key, message.value, message.timestamp / 1000)
        finally:
            await consumer.stop()
        log.info("checkpoints of partition %d read: %d open sessions", partition, len(latest))
        return latest

    @staticmethod
    def _apply(latest: Latest, key: bytes | None, value: bytes | None, written_s: float) -> None:
        session_id = (key or b"").decode("utf-8", "replace")
        if value is None:
            latest.pop(session_id, None)
            return
        try:
            checkpoint = decode(value, (SessionCheckpoint,))
        except SchemaError as exc:  # not ours to fix here: the session then starts afresh
            log.warning("unreadable checkpoint of session %s skipped: %s", session_id, exc)
            return
        latest[checkpoint.session_id] = (checkpoint, written_s)
