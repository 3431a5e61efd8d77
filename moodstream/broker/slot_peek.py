"""When a slot partition's next record was written: read by a consumer of its own, outside the consumer group.

A slot the keeper could not empty before its next generation (its records were still unread: a worker down or
stalled for a period or more) holds two generations, the older one first. The clock then names it the newer of a
partition's two slots although its next records are older than the other slot's. Only the records say so: the
embedded broker answers no offset-by-time lookups, so the worker reads the one record at its position
(`moodstream.processors.runtime.faust_overrides`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.errors import KafkaError

log = logging.getLogger("moodstream.worker")

PEEK_TIMEOUT_MS = 2_000
"""How long one peek may take; a partition not read by then is left out of the answer (the caller then goes by the
clock's order)."""


class SlotPeek:
    """One lazily started aiokafka consumer without a group; `written_at(positions)`, then `stop()`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        """aiokafka connection settings (``Settings.aiokafka_config``)."""
        self._consumer: AIOKafkaConsumer | None = None

    async def written_at(self, positions: dict[KafkaTP, int]) -> dict[KafkaTP, float]:
        """Unix seconds each partition's record at the offset given was written (its timestamp); a partition whose
        record could not be read within `PEEK_TIMEOUT_MS` is left out."""
        written: dict[KafkaTP, float] = {}
        try:
            consumer = await self._started()
            consumer.assign(list(positions))
            for tp, offset in positions.items():
                consumer.seek(tp, offset)
            deadline = time.monotonic() + PEEK_TIMEOUT_MS / 1000
            while len(written) < len(positions) and (left_s := deadline - time.monotonic()) > 0:
                waiting = [tp for tp in positions if tp not in written]
                for tp, batch in (await consumer.getmany(*waiting, timeout_ms=int(left_s * 1000))).items():
                    if batch:
                        written[tp] = batch[0].timestamp / 1000
                        consumer.pause(tp)
        except (KafkaError, OSError) as exc:
            log.warning("could not read the next records of %d slot partitions: %s", len(positions), exc)
        return written

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            # small fetches: only each partition's first record is wanted
            consumer = AIOKafkaConsumer(
                enable_auto_commit=False,
                group_id=None,
                fetch_max_wait_ms=50,
                max_partition_fetch_bytes=64 * 1024,
                **self.options,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer
