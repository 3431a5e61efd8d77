"""Bounded checkpoints: the worker's store forgets the checkpoints of sessions nobody can resume any more, and on the
embedded broker the keeper carries the latest of each session forward and empties the older slot."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from moodstream.broker.embedded import EmbeddedBroker, ensure_topics
from moodstream.broker.generations import Generations
from moodstream.broker.rotation import TopicKeeper, generation_specs
from moodstream.processors.runtime.checkpoints import CheckpointStore
from moodstream.schemas import encode
from moodstream.schemas.records import SessionCheckpoint
from moodstream.schemas.topics import CHECKPOINTS
from moodstream.settings import Settings


def test_a_checkpoint_outliving_every_resume_token_is_forgotten() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", max_session_s=100.0, resume_window_s=20.0)
    store = CheckpointStore(settings)
    assert store.ttl_s == 120.0 == settings.resume_ttl_s

    async def scenario() -> tuple[SessionCheckpoint | None, SessionCheckpoint | None, int, int]:
        now = time.time()
        old = SessionCheckpoint(session_id="old", next_utterance_seq=3, resume_sample=100)
        new = SessionCheckpoint(session_id="new", next_utterance_seq=1, resume_sample=50)
        loaded = asyncio.get_running_loop().create_future()
        loaded.set_result({"old": (old, now - 121.0), "new": (new, now - 5.0)})
        store._loads[0] = loaded  # as if partition 0 had been read from the checkpoint topic
        expired_read = await store.get("old", 0)  # too old to resume: not served even before the sweep
        kept = await store.get("new", 0)
        return expired_read, kept, store.expire(), len(loaded.result())

    expired_read, kept, dropped, left = asyncio.run(scenario())
    assert expired_read is None and kept is not None and kept.next_utterance_seq == 1
    assert dropped == 1 and left == 1


def _checkpoint(session_id: str, seq: int) -> bytes:
    return encode(SessionCheckpoint(session_id=session_id, next_utterance_seq=seq, resume_sample=seq * 16_000))


@pytest.mark.stack  # starts its own processes
def test_the_keeper_carries_each_resumable_checkpoint_forward_before_it_empties_a_slot() -> None:
    """On a broker that does not compact, the checkpoints' slots stay bounded and a worker taking a partition over
    after the older slot was emptied still finds each session's latest checkpoint, and only that."""
    generations = Generations(60)
    now = time.time()
    old = generations.current(now)
    with EmbeddedBroker() as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        ensure_topics(config, generation_specs(generations))
        old_slot, new_slot = generations.name(CHECKPOINTS, old), generations.name(CHECKPOINTS, old + 1)
        producer = Producer(config)
        written = [  # (slot, session, seq or None for a tombstone, seconds ago)
            (old_slot, "talking", 1, 10), (old_slot, "talking", 2, 5),  # the later one counts
            (old_slot, "ended", 1, 8), (old_slot, "ended", None, 4),  # ended for good: nothing to carry
            (old_slot, "long-gone", 7, 7200),  # its resume token expired: not carried
            (old_slot, "moved-on", 1, 6), (new_slot, "moved-on", 2, 3),  # newer already in the new slot
        ]  # fmt: skip
        for slot, session, seq, ago in written:
            value = _checkpoint(session, seq) if seq is not None else None
            producer.produce(slot, value=value, key=session.encode(), partition=1, timestamp=int((now - ago) * 1000))
        assert producer.flush(10) == 0
        keeper = TopicKeeper(config, generations, carry_ttl_s=3600.0)
        freed = keeper.tend(generations.starts_at(old + 1) + 30)  # mid-way through the next generation

        settings = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_rotation_s=60.0, max_session_s=3300.0,
                            resume_window_s=300.0)  # fmt: skip
        store = CheckpointStore(settings)

        async def read_back() -> dict[str, SessionCheckpoint | None]:
            names = ("talking", "ended", "long-gone", "moved-on")
            return {name: await store.get(name, 1) for name in names}

        found = asyncio.run(read_back())
        ends = [Consumer(config | {"group.id": "t"}).get_watermark_offsets(TopicPartition(old_slot, 1), timeout=5)[1]]
    assert freed == [old_slot] and ends == [0]  # the older slot's records are gone
    seqs = {name: checkpoint.next_utterance_seq if checkpoint else None for name, checkpoint in found.items()}
    assert seqs == {"talking": 2, "ended": None, "long-gone": None, "moved-on": 2}
