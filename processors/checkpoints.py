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
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from moodstream.settings import Settings
from schemas import SchemaError, decode
from schemas.records import SessionCheckpoint
from schemas.topics import CHECKPOINTS

log = logging.getLogger("moodstream.audio")


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Connection settings for an aiokafka client, security included."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if "SSL" in settings.kafka_security_protocol:
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


class CheckpointStore:
    """The latest checkpoint of each session of the partitions this worker serves."""

    def __init__(self, settings: Settings) -> None:
        self.options = aiokafka_options(settings)
        self._loads: dict[int, asyncio.Task[dict[str, SessionCheckpoint]]] = {}

    async def get(self, session_id: str, partition: int) -> SessionCheckpoint | None:
        """The session's checkpoint; the first call for a partition waits until that partition has been read."""
        if partition not in self._loads:
            self._loads[partition] = asyncio.create_task(self._read(partition))
        return (await self._loads[partition]).get(session_id)

    async def put(self, session_id: str, partition: int, checkpoint: SessionCheckpoint | None) -> None:
        """Record what this worker just wrote (None: the tombstone it wrote)."""
        if partition not in self._loads:  # written before anything was read here: read the rest first
            await self.get(session_id, partition)
        latest = await self._loads[partition]
        if checkpoint is None:
            latest.pop(session_id, None)
        else:
            latest[session_id] = checkpoint

    def forget(self, partitions: set[int]) -> None:
        """Drop what is known of `partitions` (a read under way finishes for whoever awaits it, then is dropped)."""
        for partition in partitions:
            self._loads.pop(partition, None)

    async def _read(self, partition: int) -> dict[str, SessionCheckpoint]:
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

    async def _read_once(self, partition: int) -> dict[str, SessionCheckpoint]:
        tp = TopicPartition(CHECKPOINTS.name, partition)
        consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **self.options)
        latest: dict[str, SessionCheckpoint] = {}
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    self._apply(latest, message.key, message.value)
        finally:
            await consumer.stop()
        log.info("checkpoints of partition %d read: %d open sessions", partition, len(latest))
        return latest

    @staticmethod
    def _apply(latest: dict[str, SessionCheckpoint], key: bytes | None, value: bytes | None) -> None:
        session_id = (key or b"").decode("utf-8", "replace")
        if value is None:
            latest.pop(session_id, None)
            return
        try:
            checkpoint = decode(value, (SessionCheckpoint,))
        except SchemaError as exc:  # not ours to fix here: the session then starts afresh
            log.warning("unreadable checkpoint of session %s skipped: %s", session_id, exc)
            return
        latest[checkpoint.session_id] = checkpoint
