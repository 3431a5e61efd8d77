"""The worker's consumer never commits past a record it was not done with, and reads a partition's rotating slots in
generation order without ever holding both (pure bookkeeping, no broker)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from moodstream.broker.consumer_order import NextRecord
from moodstream.broker.generations import Generations, parse
from moodstream.processors.runtime.faust_overrides import ShortFetchConsumer

TOPIC_PARTITION = TP("moodstream.audio", 0)


def bookkeeping(committed: int | None, acked: list[int]) -> SimpleNamespace:
    """The attributes Faust's offset arithmetic reads; `committed` is the next offset to read, as Kafka stores it."""
    return SimpleNamespace(
        _acked={TOPIC_PARTITION: list(acked)},
        _acked_index={TOPIC_PARTITION: set(acked)},
        _committed_offset=defaultdict(lambda: None, {TOPIC_PARTITION: committed}),
        _gap=defaultdict(IntervalTree),
    )


def test_faust_alone_commits_past_an_unacked_record_at_the_committed_offset() -> None:
    # record 31 is next to read and was never acked (dropped from a queue on a rebalance); 32 and 33 were
    assert Consumer._new_offset(bookkeeping(31, [32, 33]), TOPIC_PARTITION) == 34


def test_the_worker_waits_for_that_record_instead() -> None:
    assert ShortFetchConsumer._new_offset(bookkeeping(31, [32, 33]), TOPIC_PARTITION) is None
    assert ShortFetchConsumer._new_offset(bookkeeping(31, [31, 32, 34]), TOPIC_PARTITION) == 33
    assert ShortFetchConsumer._new_offset(bookkeeping(None, [5, 6]), TOPIC_PARTITION) == 7
    replayed = bookkeeping(31, [29, 30, 31])  # a re-read acks records below the committed offset again
    assert ShortFetchConsumer._new_offset(replayed, TOPIC_PARTITION) == 32


def test_a_gap_at_the_committed_offset_is_not_a_missing_record() -> None:
    state = bookkeeping(31, [33, 34])
    state._gap[TOPIC_PARTITION].addi(31, 33)  # offsets Kafka never had (for example transaction markers)
    assert ShortFetchConsumer._new_offset(state, TOPIC_PARTITION) == 35


def slot_reader(
    generations: Generations, unread: dict[TP, int], peeked: dict[TP, NextRecord] | None = None
) -> SimpleNamespace:
    """The attributes the slot hold reads: each slot partition's fetch position (10) `unread` records short of its
    end, and what peeks found at each slot's position."""
    states = {tp: SimpleNamespace(position=10, highwater=10 + n, has_valid_position=True) for tp, n in unread.items()}
    return SimpleNamespace(generations=generations, _partition_state=states.get, _next_written=peeked or {})


def waits(reader: SimpleNamespace, tp: TP, assigned: set[TP], now: float) -> bool:
    """Whether `tp` is held at `now`, as `_follow_rotation` asks it."""
    _spec, slot = parse(tp.topic)  # type: ignore[misc]
    generation = reader.generations.generation_in(slot, now)
    return ShortFetchConsumer._waits_for_older(reader, tp, generation, assigned, now)  # type: ignore[arg-type]


@pytest.mark.parametrize("unread_in_current", [0, 3])
def test_the_current_slot_waits_for_the_previous_one_which_waits_for_nothing_older(unread_in_current: int) -> None:
    generations = Generations(60)
    now = generations.starts_at(101) + 5  # past the switch's settle time
    current, previous = TP("moodstream.audio.s1", 2), TP("moodstream.audio.s0", 2)
    assigned = {current, previous}
    peeked = {current: NextRecord(101, 10, front=101), previous: NextRecord(100, 10, front=100)}
    behind = slot_reader(generations, {current: unread_in_current, previous: 4}, peeked)
    assert waits(behind, current, assigned, now)
    # records in both slots at once (late sends to the previous slot under load): holding the previous slot too
    # would leave the partition stalled for good
    assert not waits(behind, previous, assigned, now)
    caught_up = slot_reader(generations, {current: unread_in_current, previous: 0})
    assert not waits(caught_up, current, assigned, now)


def test_a_new_slot_waits_out_the_settle_time() -> None:
    generations = Generations(60)
    now = generations.starts_at(101) + generations.settle_s / 2
    current, previous = TP("moodstream.audio.s1", 0), TP("moodstream.audio.s0", 0)
    reader = slot_reader(generations, {current: 2, previous: 0})
    assert waits(reader, current, {current, previous}, now)
    assert not waits(reader, current, {current, previous}, generations.starts_at(101) + generations.settle_s + 0.01)


def test_a_resting_slot_drops_out_of_fetches_only_once_read_to_its_end() -> None:
    done, behind = TP("moodstream.audio.s0", 0), TP("moodstream.audio.s0", 1)
    reader = slot_reader(Generations(60), {done: 0, behind: 2})
    assert ShortFetchConsumer._read_to_end(reader, done)  # type: ignore[arg-type]
    assert not ShortFetchConsumer._read_to_end(reader, behind)  # type: ignore[arg-type]
    assert not ShortFetchConsumer._read_to_end(reader, TP("moodstream.audio.s0", 7))  # no position yet


def test_neither_slot_goes_first_while_the_other_ones_position_is_unknown() -> None:
    generations = Generations(60)
    now = generations.starts_at(101) + 5
    current, previous = TP("moodstream.audio.s1", 2), TP("moodstream.audio.s0", 2)
    fresh = slot_reader(generations, {current: 3})  # just assigned: the previous slot's end not fetched yet
    assert waits(fresh, current, {current, previous}, now)
    fresh = slot_reader(generations, {previous: 3})
    assert waits(fresh, previous, {current, previous}, now)


def test_leftovers_two_generations_old_at_the_current_slots_front_are_read_first() -> None:
    """A worker down for more than a period: the slot the clock calls current (101) still holds generation 99's
    unread records (the keeper could not empty it) in front of 101's, and the previous slot holds 100's."""
    generations = Generations(60)
    now = generations.starts_at(101) + 5
    current, previous = TP("moodstream.audio.s1", 2), TP("moodstream.audio.s0", 2)
    peeked = {current: NextRecord(101, 10, front=99), previous: NextRecord(100, 10, front=100)}
    reader = slot_reader(generations, {current: 30, previous: 20}, peeked)
    assert not waits(reader, current, {current, previous}, now)
    assert waits(reader, previous, {current, previous}, now)
    assert not waits(reader, current, {current, previous}, generations.starts_at(101) + 0.1)  # even while settling


def test_the_older_front_goes_first_when_both_slots_hold_leftovers() -> None:
    """Down for longer still: the previous slot (100) starts with 98's records, the current one (101) with 99's."""
    generations = Generations(60)
    now = generations.starts_at(101) + 5
    current, previous = TP("moodstream.audio.s1", 2), TP("moodstream.audio.s0", 2)
    peeked = {current: NextRecord(101, 10, front=99), previous: NextRecord(100, 10, front=98)}
    reader = slot_reader(generations, {current: 30, previous: 20}, peeked)
    assert waits(reader, current, {current, previous}, now)
    assert not waits(reader, previous, {current, previous}, now)


def test_a_peek_answers_for_its_offset_and_a_front_of_its_own_generation_for_the_rest_of_it() -> None:
    assert NextRecord(101, 10, front=99).answers(101, 10)
    assert not NextRecord(101, 10, front=99).answers(101, 11)  # the next record may be newer
    assert NextRecord(101, 10, front=101).answers(101, 40)
    assert not NextRecord(101, 10, front=101).answers(103, 40)  # the slot holds another generation by now


def test_fetches_wait_short_while_records_flow_and_long_at_rest() -> None:
    from moodstream.broker.fetch_pacer import FetchPacer

    pacer = FetchPacer(busy_ms=40, rest_ms=1000, rest_after_s=10.0, last_record_at=0.0)
    assert pacer.wait_ms(5.0, got_records=False) == 40  # records came 5 s ago: the stack may be mid-utterance
    assert pacer.wait_ms(10.0, got_records=False) == 1000  # 10 s without one: at rest
    assert pacer.wait_ms(10.5, got_records=True) == 40  # the first record after it: quick again


def test_at_rest_a_fetch_names_only_the_audio_partitions_and_a_send_ends_the_rest() -> None:
    """Every other topic a worker reads is written by workers from audio: at rest only the audio slots are fetched
    but for a full fetch every few seconds (tansu reads every named partition several times a wait), and once a stage
    sends, all are fetched again."""
    from aiokafka.structs import TopicPartition

    from moodstream.broker.fetch_pacer import FetchPacer
    from moodstream.processors.runtime.faust_overrides import AudioOnlyAtRest

    assigned = {TopicPartition(name, p) for name in ("moodstream.audio.s0", "moodstream.audio.s1",
                                                     "moodstream.utterances.s0", "moodstream.text-scores.s1",
                                                     "moodstream.audio") for p in (0, 3)}  # fmt: skip
    built: list[set] = []

    def build(assignment: SimpleNamespace) -> tuple[list, dict]:
        built.append(set(assignment.tps))
        return [("node", "request")], {}

    fetcher = SimpleNamespace(_get_actions_per_node=build)
    assignment = SimpleNamespace(tps=assigned, state_value=lambda tp: tp)
    rest = AudioOnlyAtRest(fetcher)
    fetcher._get_actions_per_node(assignment)
    rest.resting = True
    fetcher._get_actions_per_node(assignment)
    assert built[0] == assigned
    assert built[1] == {tp for tp in assigned if tp.topic.startswith("moodstream.audio")} and len(built[1]) == 6
    rest.full_every_s = 0.0  # a record some other producer wrote there is fetched within this, rest or not
    fetcher._get_actions_per_node(assignment)
    assert built[2] == assigned

    pacer = FetchPacer(busy_ms=40, rest_ms=1000, rest_after_s=10.0, last_record_at=0.0)
    consumer = SimpleNamespace(_pacer=pacer, _rest_filter=rest)
    assert pacer.resting(30.0)
    ShortFetchConsumer.wake(consumer)  # type: ignore[arg-type]
    assert not rest.resting and not pacer.resting(pacer.last_record_at + 9.0)


def test_the_livelock_check_reads_every_partition_in_one_pass_and_stops_with_the_worker() -> None:
    """Faust checks each assigned partition's event path every 2.5 commit intervals; the worker does it without a loop
    turn per partition (hundreds of turns at rest otherwise) and not once it is stopping."""
    import asyncio

    partitions = [TP("moodstream.audio.s0", p) for p in range(8)] + [TP("moodstream.events.s1", p) for p in range(8)]
    checked: list[TP] = []
    consumer = SimpleNamespace(assignment=lambda: partitions, should_stop=False,
                               verify_event_path=lambda now, tp: checked.append(tp))  # fmt: skip
    asyncio.run(ShortFetchConsumer.verify_all_partitions_active(consumer))  # type: ignore[arg-type]
    assert checked == partitions
    consumer.should_stop = True
    asyncio.run(ShortFetchConsumer.verify_all_partitions_active(consumer))  # type: ignore[arg-type]
    assert len(checked) == len(partitions)
