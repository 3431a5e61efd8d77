"""A session's summary per party from its tally (`processors.summary`): what each field says on a small call with
known numbers, that a replay changes nothing, and that a session resumed after a disconnect is summarised again."""

from __future__ import annotations

import pytest

from moodstream.processors.summary import count_end, count_result, summarize, summary_due
from moodstream.schemas.records import FusedResult, SessionEnded, SessionTally

LABEL = {-1: "negative", 0: "neutral", 1: "positive"}


def result(seq: int, start_s: float, end_s: float, score: float, final: bool = True) -> FusedResult:
    channel = seq % 2
    label = LABEL[(score > 0.2) - (score < -0.2)]
    return FusedResult(
        session_id="c1", utterance_seq=seq, final=final, start_ms=start_s * 1000, end_ms=end_s * 1000,
        text=f"words {seq}", text_sentiment=None, audio_sentiment=None, fused_score=score, fused_label=label,
        weights={"text": 0.5, "audio": 0.5}, latencies_ms={}, model_versions={}, channel=channel,
        role=("agent", "customer")[channel],
    )  # fmt: skip


def ended(counts: list[int], reason: str = "client", duration_s: float = 40.0) -> SessionEnded:
    return SessionEnded(session_id="c1", utterances=sum(counts), awaiting_results=True, reason=reason,
                        duration_ms=duration_s * 1000, channel_utterances=counts, roles=("agent", "customer"),
                        awaiting_summary=True)  # fmt: skip


# A 40 s call. The agent: 0-4 s, 12-16 s, 31-35 s; the customer: 3-10 s (starts inside the agent's first line),
# 20-30 s (upset), 32-38 s (starts inside the agent's last line, calmer).
CALL = [result(0, 0, 4, 0.1), result(1, 3, 10, -0.1), result(2, 12, 16, 0.0), result(3, 20, 30, -0.8),
        result(4, 31, 35, 0.3), result(5, 32, 38, 0.4)]  # fmt: skip


def tally_of(results: list[FusedResult], end: SessionEnded | None = None) -> SessionTally | None:
    tally: SessionTally | None = None
    for item in results:
        tally = count_result(tally, item) or tally
    return (count_end(tally, end) or tally) if end else tally


def test_each_party_is_summarised_from_its_own_utterances() -> None:
    tally = tally_of(CALL, ended([3, 3]))
    assert tally is not None and summary_due(tally)
    summary = summarize(tally)
    agent, customer = summary.parties
    assert (agent.role, agent.utterances, agent.talk_ms) == ("agent", 3, 12_000.0)
    assert (customer.role, customer.utterances, customer.talk_ms) == ("customer", 3, 23_000.0)
    assert customer.mean_score == pytest.approx((-0.1 - 0.8 + 0.4) / 3, abs=1e-4)
    assert customer.negative_share == pytest.approx(1 / 3, abs=1e-4)
    assert customer.most_negative is not None and customer.most_negative.utterance_seq == 3
    assert customer.most_negative.text == "words 3"
    # quarters of 40 s: the customer's first line starts in the first (3 s), its last in the last (32 s)
    assert (customer.first_quarter_score, customer.last_quarter_score) == (-0.1, 0.4)
    assert customer.score_change == pytest.approx(0.5)
    assert agent.overlap_ms == customer.overlap_ms == 4_000.0  # 3-4 s and 32-35 s
    assert (agent.interruptions, customer.interruptions) == (0, 2)
    assert summary.silence_share == pytest.approx((2 + 4 + 1 + 2) / 40, abs=1e-4)  # 10-12, 16-20, 30-31, 38-40


def test_the_summary_waits_for_every_result_the_end_announces() -> None:
    tally = tally_of(CALL[:5], ended([3, 3]))
    assert tally is not None and not summary_due(tally)  # the customer's last result is not in
    tally = count_result(tally, CALL[5])
    assert tally is not None and summary_due(tally)


def test_a_replayed_result_or_end_changes_nothing_and_provisional_results_do_not_count() -> None:
    tally = tally_of(CALL, ended([3, 3]))
    assert count_result(tally, CALL[2]) is None
    assert count_end(tally, ended([3, 3])) is None
    assert count_result(tally_of(CALL[:1]), result(1, 3, 10, -0.1, final=False)) is None
    assert count_end(tally, ended([0, 0])) is None  # an end repeated after the session ended: nothing to summarise


def test_a_session_resumed_after_a_disconnect_is_summarised_again_over_all_its_utterances() -> None:
    first = tally_of(CALL[:4], ended([2, 2], reason="disconnect", duration_s=31))
    assert first is not None and summary_due(first) and summarize(first).utterances == 4
    done = first.model_copy(update={"summarized": True})
    resumed = count_result(count_result(done, CALL[4]), CALL[5])
    assert resumed is not None and not summary_due(resumed)  # the session goes on: no new end yet
    final = count_end(resumed, ended([3, 3]))
    assert final is not None and summary_due(final)
    assert [party.utterances for party in summarize(final).parties] == [3, 3]


def test_a_mono_session_is_one_party_without_a_role() -> None:
    mono = [r.model_copy(update={"channel": 0, "role": None, "utterance_seq": n}) for n, r in enumerate(CALL[::2])]
    end = SessionEnded(session_id="c1", utterances=3, awaiting_results=True, reason="client", duration_ms=40_000)
    tally = tally_of(mono, end)
    assert tally is not None and summary_due(tally)
    (party,) = summarize(tally).parties
    assert (party.channel, party.role, party.utterances, party.overlap_ms) == (0, None, 3, 0.0)
