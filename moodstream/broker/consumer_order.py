"""The embedded broker's rotation as Faust's consumer must follow it: a partition's records in generation order
across its slot topics, resting slots out of the fetches, emptied slots read again.

`RotationOrder` is mixed into the worker's consumer (`processors.runtime.faust_overrides.ShortFetchConsumer`), which
checks the faust-streaming version these internals were written against before it is used.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition as KafkaTP
from faust.types import TP

from moodstream.broker.generations import SLOTS, Generations, parse, slot_name
from moodstream.broker.slot_peek import SlotPeek
from moodstream.schemas.topics import TopicSpec

log = logging.getLogger("moodstream.worker")


class RotationOrder:
    """Rotation-aware partition handling for a Faust aiokafka consumer (mixed in before `Consumer`).

    With rotating topics (`broker.generations`), a partition's records come in generation order: a slot's partition
    is paused until the previous generation's slot has handed out every record, `settle_s` after the switch, so a
    session's records stay in order across a switch and after a rebalance's re-read; when both slots hold unread
    records, the one whose next record is older goes first, whatever the clock says (a slot the keeper could not
    empty keeps an older generation in front); a resting slot read to its end is paused too; and a slot the keeper
    emptied is read again from its start (`_follow_rotation`, called before every fetch loop turn)."""

    generations: Generations = Generations()
    """The stream topics' rotation; set from the settings on the app's consumer class."""
    peek_options: dict[str, Any] = {}  # noqa: RUF012 - replaced, never mutated
    """aiokafka connection settings for reading a slot's next record (`broker.slot_peek`)."""
    _held: frozenset[TP] = frozenset()

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        self._next_written: dict[TP, NextRecord] = {}
        """Slot partition → what a peek found at its position (one entry per assigned slot partition at most)."""
        self._peek: SlotPeek | None = None
        self._states: Any = None
        """aiokafka's fetch states of this turn's assignment (`_look_up_states`)."""

    async def _follow_rotation(self) -> None:
        assigned = self.assignment()
        self._look_up_states()
        await self._reread_emptied(assigned)
        # This runs before every fetch loop turn, over every assigned partition: each slot's timing is worked out
        # once per turn, not per partition.
        now = time.time()
        slots = {slot: (self.generations.generation_in(slot, now), self.generations.resting(slot, now))
                 for slot in range(SLOTS)}  # fmt: skip
        parsed = [(tp, found) for tp in assigned if (found := parse(tp.topic)) is not None]
        await self._peek_fronts(parsed, assigned, now)
        self._look_up_states()
        # Faust forgets pauses on a rebalance: compare with its paused set every time, not with what we last did.
        paused = self._paused_partitions
        hold = frozenset(tp for tp, (_spec, slot) in parsed if self._waits_for_older(tp, slots[slot][0], assigned, now))
        if to_resume := (self._held - hold) & paused:
            self.resume_partitions(to_resume)
        if to_pause := hold - paused:
            self.pause_partitions(to_pause)
        self._held = hold
        await self._rest({tp for tp, (_spec, slot) in parsed if slots[slot][1] and self._read_to_end(tp)})

    async def _rest(self, resting: set[TP]) -> None:
        """Leave `resting` out of the fetch requests themselves (Faust's own pause only filters what a fetch returns):
        on the consumer's thread, and only on a change."""
        consumer = self._thread._ensure_consumer()
        if not resting and not consumer.paused():
            return  # from just before a switch until 10 s after it: nothing rests, nothing to wake
        resting &= {TP(tp.topic, tp.partition) for tp in consumer.assignment()}  # Faust's view may be a step ahead
        paused = {TP(tp.topic, tp.partition) for tp in consumer.paused()}
        if resting != paused:
            await self._thread.call_thread(self._repause, consumer, paused - resting, resting - paused)

    @staticmethod
    def _repause(consumer: Any, resume: set[TP], pause: set[TP]) -> None:
        assigned = consumer.assignment()  # again: a rebalance may have run since
        consumer.resume(*(tp for tp in map(KafkaTP._make, resume) if tp in assigned))
        consumer.pause(*(tp for tp in map(KafkaTP._make, pause) if tp in assigned))

    def _set_active_tps(self, tps: set[TP]) -> set[TP]:
        # A new assignment makes every partition active at once, and a fetch already in flight reads that set: hold
        # the current and the next slot before that fetch can hand out their records (the next round looks closer).
        active = super()._set_active_tps(tps)
        if self.generations.enabled:
            current = self.generations.current()
            newer = {tp for tp in tps if (parsed := parse(tp.topic)) and self._generation(parsed) >= current}
            self._paused_partitions.update(newer)
            active.difference_update(newer)
            self._held = frozenset(newer)
        return active

    def _generation(self, parsed: tuple[TopicSpec, int]) -> int:
        return self.generations.generation_in(parsed[1])

    def _waits_for_older(self, tp: TP, generation: int, assigned: set[TP], now: float) -> bool:
        current = self.generations.current(now)
        if generation > current:
            return True  # the next generation's slot: nothing is sent there yet
        other = other_slot(tp.topic, tp.partition, (generation + 1) % SLOTS)  # SLOTS == 2: the partition's other slot
        if other not in assigned:
            return False
        state, other_generation = (
            self._partition_state(other),
            self.generations.generation_in((generation + 1) % SLOTS, now),
        )
        mine = front_of(self._partition_state(tp), self._next_written.get(tp), generation)
        theirs = front_of(state, self._next_written.get(other), other_generation)
        if mine is not None and theirs is not None and mine != theirs:
            # both slots hold unread records and peeks said how old each one's next is: the older goes first (the
            # clock's order is wrong when the keeper could not empty a slot before its next generation)
            return mine > theirs
        if state is None or state.highwater is None or not state.has_valid_position:
            return True  # until the other slot's position and end are known, neither may go first
        if generation - 1 <= current - SLOTS:
            return False  # the previous generation's slot: nothing older to wait for
        if now < self.generations.starts_at(generation) + self.generations.settle_s:
            return True  # sends decided before the switch may still be landing in the older slot
        return bool(state.position < state.highwater)

    async def _peek_fronts(self, parsed: list[tuple[TP, tuple[TopicSpec, int]]], assigned: set[TP], now: float) -> None:
        """Peek at the next record of both slots of every partition where both hold unread records: how old each
        one's front is says which goes first (`broker.slot_peek`). Once per position for a front older than its
        slot's generation, once per generation for one of it."""
        due: dict[KafkaTP, tuple[int, int]] = {}
        for tp, (_spec, slot) in parsed:
            other = other_slot(tp.topic, tp.partition, (slot + 1) % SLOTS)
            state = self._partition_state(tp)
            if not has_unread(state) or other not in assigned or not has_unread(self._partition_state(other)):
                continue
            generation, known = self.generations.generation_in(slot, now), self._next_written.get(tp)
            if known is None or not known.answers(generation, state.position):
                due[KafkaTP(tp.topic, tp.partition)] = (generation, state.position)
        if not due:
            return
        if self._peek is None:
            self._peek = SlotPeek(self.peek_options)
        written = await self._peek.written_at({ktp: position for ktp, (_g, position) in due.items()})
        for ktp, (generation, position) in due.items():
            front = self.generations.current(written[ktp]) if ktp in written else generation  # unread: the clock's
            if front < generation:
                log.info(
                    "%s[%d] holds records of generation %d at %d, before its own %d", *ktp, front, position, generation
                )
            self._next_written[TP(ktp.topic, ktp.partition)] = NextRecord(generation, position, front)

    async def on_stop(self) -> None:
        await super().on_stop()
        if self._peek is not None:
            await self._peek.stop()

    def _read_to_end(self, tp: TP) -> bool:
        """Whether this consumer has read `tp` to its end: a resting slot's partition then drops out of every fetch
        until the slot stops resting (each partition in a fetch costs the broker a scan; half of them are done
        slots)."""
        state = self._partition_state(tp)
        if state is None or state.highwater is None or not state.has_valid_position:
            return False
        return bool(state.position >= state.highwater)

    async def _reread_emptied(self, assigned: set[TP]) -> None:
        """A slot the keeper emptied ends before this consumer's position (tansu does not say so): read it from its
        start, and forget Faust's offsets for it, which would otherwise ignore the acks of the new records."""
        for tp in assigned:
            state = self._partition_state(tp) if parse(tp.topic) else None
            if state is not None and state.has_valid_position and state.highwater is not None:
                if state.position > state.highwater:
                    log.info("%s was emptied: reading it from the start", tp)
                    # on the consumer's own thread, and a plain seek: Faust's livelock check asserts a position
                    consumer = self._thread._ensure_consumer()
                    await self._thread.call_thread(consumer.seek, KafkaTP(tp.topic, tp.partition), 0)
                    self._look_up_states()  # the states the next partitions are read from, after this await
                    for bookkeeping in (self._committed_offset, self._read_offset):
                        bookkeeping[tp] = None
                    for progress in (self._acked, self._acked_index, self._gap):
                        progress.pop(tp, None)

    def _partition_state(self, tp: TP) -> Any:
        return self._states.state_value(tp) if self._states is not None else None

    def _look_up_states(self) -> None:
        """aiokafka's per-partition fetch states of the current assignment, looked up once a turn (and again after
        each await: a rebalance may have replaced them) rather than through five attributes for every question."""
        subscription = self._thread._ensure_consumer()._subscription.subscription
        self._states = getattr(subscription, "assignment", None)


@dataclass(frozen=True)
class NextRecord:
    """What a peek found at a slot partition's position."""

    generation: int
    """The generation the slot held by the clock when it looked."""
    position: int
    """The offset it read."""
    front: int
    """The generation the record there was written in (its timestamp's): less than `generation` for a leftover."""

    def answers(self, generation: int, position: int) -> bool:
        """Whether this still says what is at `position`: a leftover only at the offset read (the next one may be
        newer), a record of the slot's own generation for every later offset of that generation."""
        if self.generation != generation:
            return False
        return position == self.position or (self.front == generation and position >= self.position)


@functools.lru_cache(maxsize=4096)
def other_slot(topic: str, partition: int, slot: int) -> TP:
    """`partition` of slot topic `topic`'s sibling in `slot` (cached: asked for every assigned partition before
    every fetch)."""
    spec, _slot = parse(topic)  # type: ignore[misc]  # only slot topics are asked about
    return TP(slot_name(spec, slot), partition)


def has_unread(state: Any) -> bool:
    """Whether a partition's fetch position and end are known and records lie between them."""
    known = state is not None and state.highwater is not None and state.has_valid_position
    return bool(known and state.position < state.highwater)


def front_of(state: Any, known: NextRecord | None, generation: int) -> int | None:
    """The generation of a slot partition's next record, if it has unread records and a peek at its position still
    says (`generation`: the one the slot holds by the clock)."""
    if has_unread(state) and known is not None and known.answers(generation, state.position):
        return known.front
    return None
