"""``moodstream tail TOPIC``: decode and print a topic's records."""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from rich.console import Console

from moodstream.broker.rotation import refuse_auto_topic_creation, reread_emptied, rest_finished
from moodstream.schemas import SchemaError, decode
from moodstream.schemas.topics import TopicSpec
from moodstream.schemas.topics import topic as topic_spec
from moodstream.settings import Settings


def tail_topic(settings: Settings, name: str, *, as_json: bool, from_beginning: bool, max_records: int = 0) -> None:
    try:
        asyncio.run(_tail(settings, topic_spec(name), as_json, from_beginning, max_records))
    except KeyboardInterrupt:
        pass


async def _tail(settings: Settings, spec: TopicSpec, as_json: bool, from_beginning: bool, max_records: int) -> None:
    """Every partition of the topic (of each of its rotating topics, when topics rotate), no group; aiokafka, which
    survives the rotation's keeper re-creating a topic."""
    refuse_auto_topic_creation()
    # the pipeline's own fetch wait: tansu holds a fetch for its whole wait, so aiokafka's 500 ms default would show
    # records in half-second bursts
    consumer = AIOKafkaConsumer(**settings.aiokafka_config(), enable_auto_commit=False,
                                fetch_max_wait_ms=settings.kafka_fetch_wait_ms)  # fmt: skip
    await consumer.start()
    try:
        partitions = [TopicPartition(n, p) for n in settings.generations.names(spec) for p in range(spec.partitions)]
        consumer.assign(partitions)
        await (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*partitions)
        console, seen = Console(), 0
        while not max_records or seen < max_records:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages[: max_records - seen if max_records else None]:
                    seen += 1
                    show(console, entry(message), as_json)
            reread_emptied(consumer)
            rest_finished(consumer, settings.generations)
    finally:
        await consumer.stop()


def entry(message: ConsumerRecord) -> dict:
    where = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
    key = (message.key or b"").decode("utf-8", "replace")
    try:
        record = decode(message.value)
    except SchemaError as exc:
        return where | {"key": key, "error": str(exc)}
    body = record.model_dump(mode="json", exclude={record.BINARY_FIELD} if record.BINARY_FIELD else None)
    return where | {"key": key, "schema": record.SCHEMA, "record": body}


def show(console: Console, found: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(found), flush=True)
    else:
        console.print(
            f"[bold]{found['topic']}[/]#{found['partition']}@{found['offset']} [cyan]{found['key']}[/]",
            found.get("schema", "[red]invalid[/]"),
            found.get("record", found.get("error")),
        )
