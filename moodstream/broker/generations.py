"""Topic generations: how the session-keyed stream topics rotate on a broker that enforces no retention.

The embedded broker (tansu, memory storage) keeps every record, gets slower as a partition holds more batches, and
frees memory only when a topic is deleted. So with rotation on (``period_s`` > 0) time is cut into generations of
``period_s`` seconds, and the records a stream topic gets during generation g go to its slot topic
``<name>.s<g mod SLOTS>``, each process choosing by its own clock when it sends. Every consumer reads all the slots
all the time (its subscription never changes, so a switch costs no rebalance); a partition's newer slot is read only
once the older one is read to its end (`processors.runtime.faust_overrides`), so a session's records stay in order
across a switch. A slot still unread when its next generation starts keeps its old records in front of the new ones; a
consumer that far behind orders the two slots by their next records' timestamps instead (`broker.slot_peek`).
The broker's keeper (`moodstream.broker.rotation`) empties the slot of generation g-1 during g, once the workers
have committed past its last record, by deleting and re-creating it; consumers notice that their position is past
the slot's end and read it again from its start (nothing is written there before generation g+1 starts).

The checkpoints topic is compacted on a real Kafka; tansu does not compact, so with rotation on it has slots too
(`CARRIED`): writers send to the current generation's slot, and the keeper carries each session's latest checkpoint
that a resume may still need forward into the current slot before it empties the older one. Readers take, per key,
the record written last (by its timestamp, which the copy keeps), so a copy that lands after a newer write is no harm.

With rotation off (``period_s`` = 0, the default on a Kafka you run, which has retention) names are the contract's.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

from moodstream.schemas.topics import ALL_TOPICS, CHECKPOINTS, TALLIES, TopicSpec

ROTATING: tuple[TopicSpec, ...] = tuple(t for t in ALL_TOPICS if t.key == "session id" and not t.compacted)
"""The stream topics that rotate: every session-keyed topic but the checkpoints, read in order by their consumers."""

CARRIED: tuple[TopicSpec, ...] = (CHECKPOINTS, TALLIES)
"""Compacted topics that rotate by carrying each key's latest record forward (no consumer group reads them: a worker
reads a partition's slots whole when it takes the partition over)."""

SLOTTED: tuple[TopicSpec, ...] = ROTATING + CARRIED
"""Every topic that has slots when topics rotate."""

SLOTS = 2
"""Slot topics per stream topic: the current generation's, and the previous one's (read to its end, then emptied
before the next generation takes it over). Every slot is a partition set each consumer fetches all the time."""

EMPTY_MARGIN_S = 5.0
"""The keeper empties a slot no sooner than this after its generation ended, and no later than this before the slot is
reused (a quarter of the period when that is less)."""

REST_AFTER_S = 10.0
"""A finished slot rests (consumers leave it out of their fetches) only this long after the switch, so a record that
took longer to land there than `settle_s` is still read promptly (the audio state machine waits up to 10 s for an
overtaken frame); a quarter of the period when that is less."""

WORKER_GROUP = "moodstream-processors"
"""The workers' consumer group (Faust app id): its committed offsets say when a generation has been read."""

_NAME = re.compile(r"^(?P<base>.+)\.s(?P<slot>\d+)$")
_BY_NAME = {spec.name: spec for spec in ROTATING}


@dataclass(frozen=True)
class Generations:
    """The rotation schedule every process of one deployment shares."""

    period_s: float = 0.0
    """Seconds of records per generation; 0: no rotation (topics keep the contract's names)."""
    settle_s: float = 0.3
    """After a switch, how long a consumer keeps reading the older slot before it may take the newer one's records
    of the same partition: covers sends decided just before the switch and still in flight."""

    @property
    def enabled(self) -> bool:
        return self.period_s > 0

    def current(self, now_s: float | None = None) -> int:
        """The generation records sent at `now_s` (Unix seconds; default now) go to."""
        return int((time.time() if now_s is None else now_s) // self.period_s) if self.enabled else 0

    @property
    def empty_margin_s(self) -> float:
        """The keeper empties the slot of generation g-1 only between ``starts_at(g) + margin`` and
        ``starts_at(g+1) - margin``."""
        return min(EMPTY_MARGIN_S, self.period_s / 4)

    def resting(self, slot: int, now_s: float | None = None) -> bool:
        """Whether `slot` holds a finished generation that no send goes to any more: from `REST_AFTER_S` after the
        switch until half the keeper's margin before the slot is reused. A consumer that has read a resting slot to
        its end need not fetch it then (every fetch is cheaper); it fetches it again before the slot is reused, to
        notice whether the keeper emptied it."""
        now = time.time() if now_s is None else now_s
        current = self.current(now)
        if not self.enabled or self.generation_in(slot, now) >= current:
            return False
        rests_from = self.starts_at(current) + max(self.settle_s, min(REST_AFTER_S, self.period_s / 4))
        return rests_from <= now < self.starts_at(current + 1) - self.empty_margin_s / 2

    def starts_at(self, generation: int) -> float:
        """Unix seconds when `generation` becomes current."""
        return generation * self.period_s

    def name(self, spec: TopicSpec, generation: int | None = None) -> str:
        """The topic `spec`'s records of `generation` (default: the current one) go to; without rotation, or for a
        topic that does not rotate, the contract's name."""
        if not self.enabled or spec not in SLOTTED:
            return spec.name
        return slot_name(spec, (self.current() if generation is None else generation) % SLOTS)

    def names(self, spec: TopicSpec) -> list[str]:
        """Every topic name of `spec` a consumer reads: all its slots when topics rotate."""
        if not self.enabled or spec not in SLOTTED:
            return [spec.name]
        return [slot_name(spec, slot) for slot in range(SLOTS)]

    def names_oldest_first(self, spec: TopicSpec, now_s: float | None = None) -> list[str]:
        """`names(spec)` in the order of the generations they hold at `now_s`: the previous one's slot first."""
        if not self.enabled or spec not in SLOTTED:
            return [spec.name]
        return [slot_name(spec, slot) for slot in sorted(range(SLOTS), key=lambda s: self.generation_in(s, now_s))]

    def generation_in(self, slot: int, now_s: float | None = None) -> int:
        """The generation whose records `slot` holds at `now_s`: the latest that has started (the next one's
        records come only once it is current)."""
        current = self.current(now_s)
        return current - (current - slot) % SLOTS


def slot_name(spec: TopicSpec, slot: int) -> str:
    return f"{spec.name}.s{slot}"


@functools.lru_cache(maxsize=4096)
def parse(topic_name: str) -> tuple[TopicSpec, int] | None:
    """(spec, slot) of a slot topic's name; None for any other name. Cached: consumers ask before every fetch."""
    found = _NAME.match(topic_name)
    if not found or found["base"] not in _BY_NAME or int(found["slot"]) >= SLOTS:
        return None
    return _BY_NAME[found["base"]], int(found["slot"])


def slot_of(topic_name: str) -> int | None:
    """The slot a slot topic's name (of any `SLOTTED` topic) says; None for any other name."""
    found = _NAME.match(topic_name)
    if not found or found["base"] not in {spec.name for spec in SLOTTED} or int(found["slot"]) >= SLOTS:
        return None
    return int(found["slot"])


def is_topic(topic_name: str, spec: TopicSpec) -> bool:
    """Whether `topic_name` is `spec`'s topic, under its contract name or as one of its slots."""
    if topic_name == spec.name:
        return True
    parsed = parse(topic_name)
    return parsed is not None and parsed[0] is spec


def topic_pattern(spec: TopicSpec) -> str:
    """A subscription regex (librdkafka's leading ^) matching `spec`'s topic under its name and as each slot: what a
    reader outside the workers and gateways (analytics, `moodstream tail`) subscribes to."""
    return rf"^{re.escape(spec.name)}(\.s\d+)?$"
