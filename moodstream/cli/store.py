"""`moodstream store`: the history writer. It reads `moodstream.events` in a consumer group of its own and writes
sessions, final results and summaries into the history database (`history.database`), then commits its offsets: a
consumer killed between the two reads the records again, and the upserts leave each row once.

`moodstream calls` (`cli.history_view`) reads that database.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from moodstream.history.database import Database
from moodstream.history.rows import Row, rows_of
from moodstream.settings import Settings

log = logging.getLogger("moodstream.store")

GROUP = "moodstream-store"
RETRY_S = 2.0
"""Wait before writing again when the database refused a batch (its offsets are not committed meanwhile)."""
FETCH_WAIT_MS = 5_000
"""The store's fetch wait: the history may lag by seconds, and a long wait is what makes its polling cheap for the
broker (tansu reads every partition a fetch names several times a wait; at 5 s about 1.4 times a second)."""


def run_store(settings: Settings, db_url: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Database(db_url) as database:
        version = database.migrate()
        log.info("history database %s at schema version %d", redacted(db_url), version)
        try:
            asyncio.run(consume(settings, database, stop))
        except KeyboardInterrupt:
            pass


async def consume(settings: Settings, database: Database, stop: threading.Event) -> None:
    """Events in, rows out, offsets committed after the rows are; every topic generation when topics rotate."""
    from aiokafka import AIOKafkaConsumer

    from moodstream.broker.fetch_pacer import FETCHER_TURN_MS
    from moodstream.broker.generations import topic_pattern
    from moodstream.broker.rotation import refuse_auto_topic_creation, reread_emptied, rest_finished
    from moodstream.schemas import SchemaError, decode
    from moodstream.schemas.records import FusedResult, SessionEnded, SessionSummary
    from moodstream.schemas.topics import EVENTS

    kept = (FusedResult, SessionEnded, SessionSummary)
    refuse_auto_topic_creation()
    consumer = AIOKafkaConsumer(**settings.aiokafka_config(), group_id=GROUP, enable_auto_commit=False,
                                auto_offset_reset="earliest", metadata_max_age_ms=5_000,
                                fetch_max_wait_ms=FETCH_WAIT_MS, consumer_timeout_ms=FETCHER_TURN_MS)  # fmt: skip
    consumer.subscribe(pattern=topic_pattern(EVENTS))
    await consumer.start()
    try:
        while not stop.is_set():
            rows: list[Row] = []
            batches = await consumer.getmany(timeout_ms=2000)  # as soon as records come; else a turn to see stop
            for messages in batches.values():
                for message in messages:
                    try:
                        record = decode(message.value, kept)
                    except SchemaError:
                        continue  # not a record the history keeps (or not one at all)
                    rows += rows_of(record, float(message.timestamp))
            if rows:
                await write_until_done(database, rows, stop)
            if batches:  # nothing read, nothing to commit
                await consumer.commit()
            reread_emptied(consumer)
            rest_finished(consumer, settings.generations)
    finally:
        await consumer.stop()


async def write_until_done(database: Database, rows: list[Row], stop: threading.Event) -> None:
    """Write the batch, retrying while the database is away (the records are not committed until it is written)."""
    while True:
        try:
            await asyncio.to_thread(database.write, rows)
            return
        except Exception as exc:  # a database restart or network blip: this batch waits
            if stop.is_set():
                raise
            log.warning("history database write failed (%s); retrying in %.0f s", exc, RETRY_S)
            await asyncio.sleep(RETRY_S)


def redacted(url: str) -> str:
    """The URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, credentials = head.split("://", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{tail}"
