"""The worker's consumer never commits past a record it was not done with (pure offset bookkeeping, no broker)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from processors.faust_overrides import PromptFetchConsumer

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
    assert PromptFetchConsumer._new_offset(bookkeeping(31, [32, 33]), TOPIC_PARTITION) is None
    assert PromptFetchConsumer._new_offset(bookkeeping(31, [31, 32, 34]), TOPIC_PARTITION) == 33
    assert PromptFetchConsumer._new_offset(bookkeeping(None, [5, 6]), TOPIC_PARTITION) == 7
    replayed = bookkeeping(31, [29, 30, 31])  # a re-read acks records below the committed offset again
    assert PromptFetchConsumer._new_offset(replayed, TOPIC_PARTITION) == 32


def test_a_gap_at_the_committed_offset_is_not_a_missing_record() -> None:
    state = bookkeeping(31, [33, 34])
    state._gap[TOPIC_PARTITION].addi(31, 33)  # offsets Kafka never had (for example transaction markers)
    assert PromptFetchConsumer._new_offset(state, TOPIC_PARTITION) == 35
