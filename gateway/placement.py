"""Where a new session goes: the gateway picks the session id so that its partition belongs to the least busy worker.

Kafka puts a session on partition murmur2(session id) mod N, and the worker that owns that partition does all of
the session's work. Random ids spread 12 sessions over 8 partitions and 2 workers unevenly (7 on one and 5 on the
other is common), and the busiest worker sets everyone's latency. So each gateway counts its own live sessions per
worker (heartbeats say who owns which partition) and draws ids until one lands on the least used partition of the
worker with the fewest. Several gateways each balance their own share; a resumed session keeps its id.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping

from moodstream.schemas.topics import SESSION_PARTITIONS, partition_for

MAX_DRAWS = 256
"""Ids drawn before settling for a random one; with 8 partitions a draw hits the target 1 time in 8."""


def choose_partition(
    owners: Mapping[str, frozenset[int]], live_partitions: Iterable[int], partitions: int = SESSION_PARTITIONS
) -> int | None:
    """The partition for a new session: the least used partition of the worker with the fewest live sessions.
    None when no worker is known (any partition will do)."""
    load = Counter(live_partitions)
    candidates = [(sum(load[p] for p in owned), worker, owned) for worker, owned in owners.items() if owned]
    if not candidates:
        return None
    _, _, owned = min(candidates, key=lambda c: (c[0], c[1]))
    return min(sorted(owned), key=lambda p: load[p]) % partitions


def new_session_id(partition: int | None, partitions: int = SESSION_PARTITIONS) -> str:
    """A fresh random session id that Kafka puts on ``partition`` (any partition when None)."""
    session_id = uuid.uuid4().hex
    if partition is None:
        return session_id
    for _ in range(MAX_DRAWS):
        if partition_for(session_id, partitions) == partition:
            return session_id
        session_id = uuid.uuid4().hex
    return session_id
