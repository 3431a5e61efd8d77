"""Hand-offs between the stages of one worker, without a broker: what starts early, what its topic copy does, and
when the topic path takes a record instead."""

from __future__ import annotations

import asyncio

import pytest

from moodstream.processors.runtime.handoff import HandoffOptions, Handoffs
from moodstream.schemas.records import (
    AcousticScore,
    AcousticWindow,
    PartialAudio,
    SentimentScores,
    TextScore,
    Utterance,
)
from moodstream.schemas.topics import TEXT_SCORES, UTTERANCES, TopicSpec


def score(seq: int, session: str = "s1") -> TextScore:
    return TextScore(session_id=session, utterance_seq=seq, text="fine", has_text=True,
                     sentiment=SentimentScores(negative=0.1, neutral=0.8, positive=0.1), label="neutral",
                     model_version="t", compute_ms=1.0, last_frame_received_at_ms=0.0)  # fmt: skip


class Consumer:
    """A next stage: records its work and its topic copies' handling; its work waits for `release` when gated."""

    def __init__(self, gated: bool = False) -> None:
        self.worked: list[tuple[int, int]] = []
        self.handled: list[tuple[str, int]] = []
        self.release = asyncio.Event()
        if not gated:
            self.release.set()

    async def work(self, record: TextScore, partition: int) -> None:
        await self.release.wait()
        if record.text == "fail":
            raise RuntimeError("the model failed")
        self.worked.append((record.utterance_seq, partition))

    async def handle(self, token: str, record: TextScore) -> None:
        self.handled.append((token, record.utterance_seq))


def handoffs(owned: set[int], **options: int | bool) -> Handoffs:
    def reads(spec: TopicSpec, partition: int) -> bool:
        return spec == TEXT_SCORES and partition in owned

    return Handoffs(reads, HandoffOptions(**options))  # type: ignore[arg-type]


async def test_a_record_of_a_partition_this_worker_reads_starts_its_next_stage_before_the_broker_brings_it() -> None:
    shortcut, fusion = handoffs({3}), Consumer()
    shortcut.route(TEXT_SCORES, "fusion", fusion.work)
    assert shortcut.hand_off(TEXT_SCORES, score(0), 3) == 1
    await asyncio.sleep(0)
    assert fusion.worked == [(0, 3)]
    copies = shortcut.copies("fusion", fusion.handle)
    await copies("copy", score(0))
    assert fusion.handled == []  # done already: the copy only waited for the work, and is acked by its loop
    await copies("replay", score(0))
    assert fusion.handled == [("replay", 0)]  # a second copy (another worker's, a replay) is processed as before


async def test_records_another_worker_reads_or_no_stage_here_reads_go_through_the_broker_only() -> None:
    shortcut, fusion = handoffs({3}), Consumer()
    shortcut.route(TEXT_SCORES, "fusion", fusion.work)
    assert shortcut.hand_off(TEXT_SCORES, score(0), 4) == 0  # its copy lands with the partition's owner
    assert shortcut.hand_off(UTTERANCES, score(1), 3) == 0  # no route
    off = handoffs({3}, enabled=False)
    off.route(TEXT_SCORES, "fusion", fusion.work)
    assert off.hand_off(TEXT_SCORES, score(2), 3) == 0
    await asyncio.sleep(0)
    assert fusion.worked == []


async def test_the_copy_of_a_record_still_being_worked_on_waits_for_that_work_before_its_loop_acks_it() -> None:
    shortcut, asr = handoffs({0}), Consumer(gated=True)
    shortcut.route(TEXT_SCORES, "asr", asr.work)
    shortcut.hand_off(TEXT_SCORES, score(0), 0)
    copy = asyncio.ensure_future(shortcut.copies("asr", asr.handle)("copy", score(0)))
    await asyncio.sleep(0.01)
    assert not copy.done()  # acking now could commit past a record whose outputs are not out
    asr.release.set()
    await copy
    assert asr.worked == [(0, 0)] and asr.handled == []


async def test_a_stateful_consumer_handles_the_copy_after_the_work_so_it_can_ack_by_its_own_rule() -> None:
    shortcut, fusion = handoffs({0}), Consumer()
    shortcut.route(TEXT_SCORES, "fusion", fusion.work)
    shortcut.hand_off(TEXT_SCORES, score(0), 0)
    await shortcut.copies("fusion", fusion.handle, then_handle=True)("copy", score(0))
    assert fusion.worked == [(0, 0)] and fusion.handled == [("copy", 0)]


async def test_work_that_failed_raises_at_its_topic_copy_so_the_copy_is_dead_lettered() -> None:
    shortcut, asr = handoffs({0}), Consumer()
    shortcut.route(TEXT_SCORES, "asr", asr.work)
    shortcut.hand_off(TEXT_SCORES, score(0).model_copy(update={"text": "fail"}), 0)
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="the model failed"):
        await shortcut.copies("asr", asr.handle)("copy", score(0))


async def test_a_consumer_that_falls_behind_leaves_further_records_to_the_broker() -> None:
    shortcut, asr = handoffs({0}, max_in_flight=2), Consumer(gated=True)
    shortcut.route(TEXT_SCORES, "asr", asr.work)
    assert [shortcut.hand_off(TEXT_SCORES, score(seq), 0) for seq in range(3)] == [1, 1, 0]
    asr.release.set()
    await asyncio.gather(*(handoff.work for handoff in shortcut.waiting.values()))
    assert shortcut.hand_off(TEXT_SCORES, score(3), 0) == 1  # room again once the work finished
    await shortcut.copies("asr", asr.handle)("copy", score(2))
    assert asr.handled == [("copy", 2)]  # the one left to the broker is processed from its copy


async def test_hand_offs_of_partitions_given_up_are_forgotten_and_their_copies_processed_by_the_next_owner() -> None:
    shortcut, asr = handoffs({0, 1}), Consumer()
    shortcut.route(TEXT_SCORES, "asr", asr.work)
    shortcut.hand_off(TEXT_SCORES, score(0, "a"), 0)
    shortcut.hand_off(TEXT_SCORES, score(0, "b"), 1)
    shortcut.forget({0})
    assert shortcut.claim("asr", score(0, "a")) is None
    assert shortcut.claim("asr", score(0, "b")) is not None
    assert shortcut.claim("asr", score(0, "b")) is None  # claimed once


def test_every_record_a_stage_hands_off_has_an_identity_within_its_session() -> None:
    # a record type without one would make every record of a session the same hand-off
    for record in (Utterance, AcousticWindow, PartialAudio, AcousticScore, TextScore):
        assert record.IDENTITY, record.SCHEMA
