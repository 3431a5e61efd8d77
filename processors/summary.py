"""A session's summary per party, as pure functions over its tally: final results and the session's end in; the tally
to keep and, once every final result of an ended session is in, the summary out. No Kafka: the fusion stage shell
(`stages/fusion.py`) stores the tally (`runtime.checkpoints.TallyStore`) before it acks the scores of the results it
counts, and sends the summary to the events topic, where the gateway puts it on the client's `session.ended`.

Invariants:
- A result counts once (by its seq) and a repeated end changes nothing, so a replay after a crash or a takeover
  leaves the tally as it was and makes the same summary again (consumers drop it by its identity).
- A summary is made for an end once every utterance the end announces has its final result. A session resumed after
  a disconnect goes on counting, and its next end is summarised again, over all its utterances.
"""

from __future__ import annotations

import numpy as np

from moodstream.schemas.records import (
    FusedResult,
    PartySummary,
    SessionEnded,
    SessionSummary,
    SessionTally,
    TalliedUtterance,
    UtteranceRef,
)

ROUND = 4
"""Decimals of the scores and shares a summary states."""


def count_result(tally: SessionTally | None, result: FusedResult) -> SessionTally | None:
    """The tally with `result` counted; None when nothing changes (a provisional result, or one counted already)."""
    tally = tally or SessionTally(session_id=result.session_id)
    if not result.final or any(counted.seq == result.utterance_seq for counted in tally.results):
        return None
    counted = TalliedUtterance(seq=result.utterance_seq, channel=result.channel, start_ms=result.start_ms,
                               end_ms=result.end_ms, score=result.fused_score,
                               negative=result.fused_label == "negative")  # fmt: skip
    lowest = list(tally.lowest) + [None] * (result.channel + 1 - len(tally.lowest))
    current = lowest[result.channel]
    if current is None or result.fused_score < current.fused_score:
        lowest[result.channel] = UtteranceRef(utterance_seq=result.utterance_seq, start_ms=result.start_ms,
                                              end_ms=result.end_ms, fused_score=result.fused_score,
                                              text=result.text)  # fmt: skip
    return tally.model_copy(update={"results": [*tally.results, counted], "lowest": lowest})


def count_end(tally: SessionTally | None, ended: SessionEnded) -> SessionTally | None:
    """The tally with the session's end noted; None for an end noted already, or one that announces fewer utterances
    than an earlier end (a client repeating its end after the session ended: the session starts over empty)."""
    tally = tally or SessionTally(session_id=ended.session_id)
    noted = tally.ended
    if noted is not None and (
        (noted.utterances, noted.reason) == (ended.utterances, ended.reason) or ended.utterances < noted.utterances
    ):
        return None
    return tally.model_copy(update={"ended": ended, "summarized": False})


def summary_due(tally: SessionTally) -> bool:
    """The session has ended, is not summarised yet, and every utterance its end announces has its final result."""
    if tally.ended is None or tally.summarized:
        return False
    counted = {result.seq for result in tally.results}
    return all(seq in counted for seq in tally.ended.utterance_seqs())


def summarize(tally: SessionTally) -> SessionSummary:
    """The summary of an ended session's tally (see `schemas.records.PartySummary` for each field)."""
    ended = tally.ended
    assert ended is not None, "only an ended session is summarised"
    channels = max(len(ended.channel_utterances or [0]), len(ended.roles or ()), len(tally.lowest), 1)
    spans = [_spans(tally, channel) for channel in range(channels)]
    parties = [_party(tally, channel, spans) for channel in range(channels)]
    spoken_ms = _union_ms(np.concatenate(spans)) if tally.results else 0.0
    duration = max(ended.duration_ms, spoken_ms)
    return SessionSummary(
        session_id=tally.session_id,
        reason=ended.reason,
        duration_ms=ended.duration_ms,
        utterances=ended.utterances,
        parties=parties,
        silence_share=round(1 - spoken_ms / duration, ROUND) if duration > 0 else 1.0,
    )


def _spans(tally: SessionTally, channel: int) -> np.ndarray:
    """(start, end, score) of the channel's utterances, by start."""
    rows = sorted((r.start_ms, r.end_ms, r.score) for r in tally.results if r.channel == channel)
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _party(tally: SessionTally, channel: int, spans: list[np.ndarray]) -> PartySummary:
    ended = tally.ended
    assert ended is not None
    own = spans[channel]
    others = np.concatenate([s for c, s in enumerate(spans) if c != channel] or [np.empty((0, 3))])
    negatives = [r.negative for r in tally.results if r.channel == channel]
    quarter = ended.duration_ms / 4
    first = _mean(own[own[:, 0] < quarter, 2])
    last = _mean(own[own[:, 0] >= 3 * quarter, 2])
    overlap = np.clip(np.minimum(own[:, None, 1], others[None, :, 1]) - np.maximum(own[:, None, 0], others[None, :, 0]),
                      0, None)  # fmt: skip
    inside = (others[None, :, 0] < own[:, None, 0]) & (own[:, None, 0] < others[None, :, 1])
    roles = ended.roles or ()
    return PartySummary(
        channel=channel,
        role=roles[channel] if channel < len(roles) else None,
        utterances=len(own),
        talk_ms=round(float((own[:, 1] - own[:, 0]).sum()), 1),
        mean_score=_mean(own[:, 2]),
        negative_share=round(sum(negatives) / len(negatives), ROUND) if negatives else None,
        most_negative=tally.lowest[channel] if channel < len(tally.lowest) else None,
        first_quarter_score=first,
        last_quarter_score=last,
        score_change=round(last - first, ROUND) if first is not None and last is not None else None,
        overlap_ms=round(float(overlap.sum()), 1),
        interruptions=int(inside.any(axis=1).sum()),
    )


def _mean(scores: np.ndarray) -> float | None:
    return round(float(scores.mean()), ROUND) + 0.0 if len(scores) else None


def _union_ms(spans: np.ndarray) -> float:
    """Time covered by at least one of the spans."""
    covered, reach = 0.0, -np.inf
    for start, end in sorted(zip(spans[:, 0], spans[:, 1], strict=True)):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return float(covered)
