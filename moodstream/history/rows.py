"""What a session's records become in the history database: pure, no database and no Kafka.

Each record of the events topic that the history keeps maps to rows keyed as the tables are (a session; a session and
an utterance seq; a session and a channel), so writing the rows of a replayed record again changes nothing: the store
consumer is at-least-once, the tables hold each row once.
"""

from __future__ import annotations

from dataclasses import dataclass

from moodstream.schemas.records import FusedResult, Record, SessionEnded, SessionSummary


@dataclass(frozen=True)
class Row:
    """One row to insert, or to update in place when its key is there already."""

    table: str
    key: tuple[str, ...]
    """The columns of the table's primary key."""
    values: dict[str, object]
    """Column → value, the key's columns included."""


def rows_of(record: Record, at_ms: float) -> list[Row]:
    """The rows a record adds (none for records the history does not keep); `at_ms`: when it was written."""
    if isinstance(record, FusedResult) and record.final:
        return [_session_seen(record.session_id, at_ms), _utterance(record)]
    if isinstance(record, SessionEnded):
        return [_ended(record, at_ms)]
    if isinstance(record, SessionSummary):
        return [_summarised(record), *(_party(record, n) for n in range(len(record.parties)))]
    return []


def _session_seen(session_id: str, at_ms: float) -> Row:
    return Row("sessions", ("session_id",), {"session_id": session_id, "last_result_at_ms": at_ms})


def _utterance(result: FusedResult) -> Row:
    text_label = result.text_sentiment.label if result.text_sentiment else None
    voice_label = result.audio_sentiment.label if result.audio_sentiment else None
    values = {
        "session_id": result.session_id,
        "utterance_seq": result.utterance_seq,
        "channel": result.channel,
        "role": result.role,
        "start_ms": result.start_ms,
        "end_ms": result.end_ms,
        "text": result.text,
        "fused_score": result.fused_score,
        "fused_label": result.fused_label,
        "text_label": text_label,
        "voice_label": voice_label,
        "arousal": result.arousal,
        "emotion_label": result.emotion_label,
        "received_at_ms": result.last_frame_received_at_ms,
    }
    return Row("utterances", ("session_id", "utterance_seq"), values)


def _ended(ended: SessionEnded, at_ms: float) -> Row:
    values = {
        "session_id": ended.session_id,
        "ended_at_ms": at_ms,
        "end_reason": ended.reason,
        "duration_ms": ended.duration_ms,
        "utterances": ended.utterances,
        "channels": len(ended.channel_utterances or [0]),
        "roles": ",".join(ended.roles) if ended.roles else None,
    }
    return Row("sessions", ("session_id",), values)


def _summarised(summary: SessionSummary) -> Row:
    values = {"session_id": summary.session_id, "silence_share": summary.silence_share,
              "summarised_utterances": summary.utterances}  # fmt: skip
    return Row("sessions", ("session_id",), values)


def _party(summary: SessionSummary, index: int) -> Row:
    party = summary.parties[index]
    low = party.most_negative
    values = {
        "session_id": summary.session_id,
        "channel": party.channel,
        "role": party.role,
        "utterances": party.utterances,
        "talk_ms": party.talk_ms,
        "mean_score": party.mean_score,
        "negative_share": party.negative_share,
        "most_negative_seq": low.utterance_seq if low else None,
        "most_negative_score": low.fused_score if low else None,
        "most_negative_text": low.text if low else None,
        "first_quarter_score": party.first_quarter_score,
        "last_quarter_score": party.last_quarter_score,
        "score_change": party.score_change,
        "overlap_ms": party.overlap_ms,
        "interruptions": party.interruptions,
    }
    return Row("parties", ("session_id", "channel"), values)
