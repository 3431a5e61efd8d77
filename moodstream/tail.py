"""``moodstream tail TOPIC``: decode and print a topic's records."""

from __future__ import annotations

import json
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from rich.console import Console

from moodstream.settings import Settings
from schemas import SchemaError, decode
from schemas.generations import ROTATING, topic_pattern
from schemas.topics import topic as topic_spec


def tail_topic(settings: Settings, name: str, *, as_json: bool, from_beginning: bool, max_records: int = 0) -> None:
    spec = topic_spec(name)
    consumer_config = settings.kafka_config() | {
        "group.id": f"moodstream-tail-{time.time_ns()}",
        "enable.auto.commit": False,
    }
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    if settings.generations.enabled and spec in ROTATING:  # follow the generations as they come
        consumer = Consumer(consumer_config | {"auto.offset.reset": "earliest" if from_beginning else "latest"})
        consumer.subscribe([topic_pattern(spec)])
    else:
        consumer = Consumer(consumer_config)
        consumer.assign([TopicPartition(spec.name, p, start) for p in range(spec.partitions)])
    console = Console()
    seen = 0
    try:
        while not max_records or seen < max_records:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            seen += 1
            key = (msg.key() or b"").decode("utf-8", "replace")
            try:
                record = decode(msg.value())
                body = record.model_dump(mode="json", exclude={record.BINARY_FIELD} if record.BINARY_FIELD else None)
                entry = {
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": key,
                    "schema": record.SCHEMA,
                    "record": body,
                }
            except SchemaError as exc:
                entry = {
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": key,
                    "error": str(exc),
                }
            if as_json:
                print(json.dumps(entry), flush=True)
            else:
                console.print(
                    f"[bold]{entry['topic']}[/]#{entry['partition']}@{entry['offset']} [cyan]{key}[/]",
                    entry.get("schema", "[red]invalid[/]"),
                    entry.get("record", entry.get("error")),
                )
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
