"""Session placement: ids chosen so sessions spread evenly over the workers that own the partitions."""

from __future__ import annotations

import os

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from moodstream.gateway.placement import choose_partition, new_session_id
from moodstream.schemas.topics import murmur2, partition_for

OWNERS = {"worker-a": frozenset({0, 1, 2, 3}), "worker-b": frozenset({4, 5, 6, 7})}


def test_murmur2_matches_the_kafka_client_used_by_the_workers() -> None:
    for length in range(0, 40):
        for _ in range(20):
            data = os.urandom(length)
            assert murmur2(data) == aiokafka_murmur2(data)


def test_new_session_goes_to_the_worker_with_fewest_sessions() -> None:
    assert choose_partition(OWNERS, [0, 1, 2]) in OWNERS["worker-b"]
    assert choose_partition(OWNERS, [0, 4, 5]) in OWNERS["worker-a"]


def test_within_a_worker_the_least_used_partition_is_chosen() -> None:
    assert choose_partition(OWNERS, [4, 0, 1, 1]) == 5  # b holds fewer; 4 is taken
    assert choose_partition(OWNERS, [0, 0, 1, 4, 4, 5, 6]) == 2


def test_sessions_placed_one_by_one_end_up_even() -> None:
    live: list[int] = []
    for _ in range(12):
        session_id = new_session_id(choose_partition(OWNERS, live))
        live.append(partition_for(session_id))
    per_worker = [sum(p in owned for p in live) for owned in OWNERS.values()]
    assert per_worker == [6, 6]
    assert max(live.count(p) for p in range(8)) - min(live.count(p) for p in range(8)) <= 1


def test_without_known_workers_any_id_will_do() -> None:
    assert choose_partition({}, [1, 2]) is None
    assert len(new_session_id(None)) == 32
