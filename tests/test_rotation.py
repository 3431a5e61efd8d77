"""Rotating stream topics on the embedded broker (`broker.generations`, `moodstream.broker.rotation`): the slot naming
contract, and a session streamed through real processes across several switches with nothing lost or doubled while
the keeper empties the finished slots."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiokafka.client
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTP
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from moodstream.broker.embedded import EmbeddedBroker, ensure_topics, free_port
from moodstream.broker.generations import SLOTS, SLOTTED, Generations, is_topic, parse, topic_pattern
from moodstream.broker.rotation import (
    LATEST_ONLY_GENERATIONS,
    MetadataRequestWithoutAutoCreation,
    TopicKeeper,
    generation_specs,
    reread_emptied,
)
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import ClientOptions, MoodstreamClient
from moodstream.schemas.topics import ALL_TOPICS, AUDIO, CHECKPOINTS, EVENTS, HEALTH, UTTERANCES, TopicSpec
from moodstream.settings import Settings
from tests.conftest import process_env, spawn, stop, wait_ready

SPEECH = load_pcm16(Path(__file__).parent / "data" / "three_prompts.wav")


def test_each_generation_writes_to_its_slot_and_readers_read_every_slot() -> None:
    generations = Generations(60)
    now = 1_800_000_000.0
    current = generations.current(now)
    assert generations.name(AUDIO, current) == f"moodstream.audio.s{current % SLOTS}"
    assert generations.name(CHECKPOINTS, current) == f"moodstream.checkpoints.s{current % SLOTS}"  # carried forward
    assert generations.names_oldest_first(CHECKPOINTS, now) == [
        f"moodstream.checkpoints.s{(current - 1) % SLOTS}",
        f"moodstream.checkpoints.s{current % SLOTS}",
    ]
    assert parse("moodstream.checkpoints.s0") is None  # not a stream slot: no consumer group reads it in order
    assert generations.names(EVENTS) == [f"moodstream.events.s{slot}" for slot in range(SLOTS)]
    assert {generations.generation_in(slot, now) for slot in range(SLOTS)} == {current - 1, current}
    assert parse("moodstream.audio.s1") == (AUDIO, 1) and parse("moodstream.audio") is None
    assert parse(f"moodstream.audio.s{SLOTS}") is None
    assert is_topic("moodstream.events.s1", EVENTS) and is_topic(EVENTS.name, EVENTS)
    assert not is_topic("moodstream.audio.s1", EVENTS)
    assert re.match(topic_pattern(EVENTS), "moodstream.events.s0") and re.match(topic_pattern(EVENTS), EVENTS.name)
    names = {spec.name for spec in generation_specs(generations)}
    assert len(names) == len(ALL_TOPICS) - len(SLOTTED) + SLOTS * len(SLOTTED) and AUDIO.name not in names


def test_a_finished_slot_rests_between_the_switch_settling_and_its_reuse() -> None:
    generations = Generations(60)  # rests 10 s after a switch; the keeper keeps 5 s from each, consumers wake at 2.5 s
    switch = generations.starts_at(100)
    old, new = 99 % SLOTS, 100 % SLOTS
    assert not generations.resting(old, switch + 0.1)  # sends decided before the switch may still land there
    assert not generations.resting(old, switch + 9.9)  # a late record there is still read at once
    assert generations.resting(old, switch + 10.1) and generations.resting(old, switch + 57.4)
    assert not generations.resting(old, switch + 57.6)  # fetched again to see whether the keeper emptied it
    assert not any(generations.resting(new, switch + t) for t in (0.1, 0.5, 30, 59.9))  # the current slot never rests
    assert not Generations(0).resting(0, switch + 30)


class _StubbornKeeper(TopicKeeper):
    """The keeper's decisions without a broker: the audio slot's offsets go unanswered (as during a rebalance),
    every other slot holds records its readers are done with."""

    def _slot_state(self, name: str, spec: TopicSpec) -> tuple[bool, bool]:
        if spec is AUDIO:
            raise KafkaException("OffsetFetch timed out")
        return True, True

    def _carry(self, name: str, spec: TopicSpec, into: int, now_s: float) -> tuple[bool, bool]:
        return True, True

    def _repair(self, current: int) -> None:
        pass

    def _empty(self, slots: list[tuple[str, TopicSpec, int]]) -> None:
        for name, _spec, generation in slots:
            self.emptied[name] = generation
            self.freed.append(name)


def test_a_slot_whose_offsets_go_unanswered_waits_alone() -> None:
    generations = Generations(60)
    keeper = _StubbornKeeper({"bootstrap.servers": "unused:9"}, generations, 3600.0)
    freed = keeper.tend(generations.starts_at(100) + 30)  # mid-generation: the slots of generation 99 are due
    assert generations.name(EVENTS, 99) in freed and generations.name(UTTERANCES, 99) in freed
    assert generations.name(AUDIO, 99) not in freed and generations.name(AUDIO, 99) not in keeper.emptied
    assert keeper.tend(generations.starts_at(100) + 31) == []  # the rest is done; audio is asked again


def test_rotation_off_keeps_the_contracts_names() -> None:
    off = Generations(0)
    assert off.name(AUDIO) == AUDIO.name and off.names(EVENTS) == [EVENTS.name]
    assert generation_specs(off) == ALL_TOPICS


async def stream_session(url: str, seconds: float) -> list[dict]:
    pcm = (SPEECH * 10)[: int(seconds * 16_000) * 2]
    client = MoodstreamClient(url, ClientOptions(frame_ms=20))
    await client.connect()
    sender = asyncio.create_task(client.stream(pcm))
    messages = [message async for message in client.messages()]
    await sender
    await client.close()
    return messages


@pytest.mark.stack  # starts its own processes
def test_a_session_streams_across_switches_while_finished_slots_are_emptied() -> None:
    period = 8.0
    with EmbeddedBroker() as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        generations = Generations(period)
        ensure_topics(config, generation_specs(generations))
        keeper = TopicKeeper(config, generations, Settings().resume_ttl_s).start()
        port = free_port()
        env = process_env(broker.bootstrap, MOODSTREAM_TOPIC_ROTATION_S=str(period))
        children = [spawn(["worker"], env), spawn(["gateway", "--port", str(port)], env)]
        try:
            wait_ready(f"http://127.0.0.1:{port}", children)
            started = time.time()
            messages = asyncio.run(stream_session(f"ws://127.0.0.1:{port}/ws/analyze", 33.0))
            switches = generations.current() - generations.current(started)
        finally:
            stop(children)
            keeper.stop()
    finals = [m["utterance_seq"] for m in messages if m["type"] == "utterance" and m["final"]]
    ended = [m for m in messages if m["type"] == "session.ended"]
    assert switches >= 3
    assert ended and ended[0]["utterances"] >= 8  # three prompts every 11 s
    assert sorted(finals) == list(range(ended[0]["utterances"]))  # every utterance once, none lost
    assert any(is_topic(name, AUDIO) for name in keeper.freed), keeper.freed  # a slot the worker read was emptied


@pytest.mark.stack  # starts its own processes
def test_the_health_topic_is_emptied_every_few_generations_and_its_reader_reads_on() -> None:
    """Heartbeats would pile up on a broker without retention; the keeper empties the topic now and then, and a
    reader at its old end (as the gateway is) notices and reads the next heartbeats."""
    generations = Generations(60)
    with EmbeddedBroker() as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        ensure_topics(config, generation_specs(generations))
        producer = Producer(config)
        for beat in range(3):
            producer.produce(HEALTH.name, value=b"beat %d" % beat, key=b"w1")
        assert producer.flush(10) == 0
        keeper = TopicKeeper(config, generations, 3600.0)
        turn = generations.current() // LATEST_ONLY_GENERATIONS
        first = generations.starts_at((turn + 1) * LATEST_ONLY_GENERATIONS)
        assert HEALTH.name not in keeper.tend(first - 30)  # nothing is emptied on the keeper's first look
        assert HEALTH.name in keeper.tend(first + 1)
        assert HEALTH.name not in keeper.tend(first + 2)  # once per turn

        async def read_on() -> list[bytes]:
            consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
            await consumer.start()
            try:
                tp = KafkaTP(HEALTH.name, 0)
                consumer.assign([tp])
                consumer.seek(tp, 3)  # where a reader of the old topic stood
                producer.produce(HEALTH.name, value=b"after", key=b"w1")
                producer.flush(10)
                got: list[bytes] = []
                for _ in range(40):
                    got += [m.value for m in (await consumer.getmany(timeout_ms=250)).get(tp, [])]
                    reread_emptied(consumer)
                    if got:
                        return got
                return got
            finally:
                await consumer.stop()

        assert asyncio.run(read_on()) == [b"after"]


@pytest.mark.stack  # starts its own processes
def test_a_slot_that_came_back_short_of_partitions_is_re_created() -> None:
    """tansu creates a topic a client asks metadata for (aiokafka asks for auto-creation) with its own partition
    count; a slot that came back so between the keeper's delete and create is re-created in the keeper's next round."""
    generations = Generations(60)
    with EmbeddedBroker() as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        ensure_topics(config, generation_specs(generations))
        now = time.time()
        spare = generations.name(AUDIO, generations.current(now) + 1)  # the slot not current
        admin = AdminClient(config)
        for future in admin.delete_topics([spare], operation_timeout=10).values():
            future.result()
        for future in admin.create_topics([NewTopic(spare, num_partitions=1)]).values():
            future.result()
        TopicKeeper(config, generations, 3600.0).tend(now)
        assert len(admin.list_topics(timeout=10).topics[spare].partitions) == AUDIO.partitions


@pytest.mark.stack  # starts its own processes
def test_our_metadata_requests_do_not_create_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    """What made slots come back short: tansu creates a topic an aiokafka client asks metadata for, with 4
    partitions. Workers' and gateways' clients ask without auto-creation."""

    async def ask(bootstrap: str, name: str) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            await consumer._client._metadata_update(consumer._client.cluster, [name])
        finally:
            await consumer.stop()

    with EmbeddedBroker() as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        asyncio.run(ask(broker.bootstrap, "asked.by.default"))
        monkeypatch.setattr(aiokafka.client, "MetadataRequest", MetadataRequestWithoutAutoCreation)
        asyncio.run(ask(broker.bootstrap, "asked.by.a.worker"))
        topics = admin.list_topics(timeout=10).topics
    assert len(topics["asked.by.default"].partitions) == 4  # what the broker does unless told not to
    assert "asked.by.a.worker" not in topics
