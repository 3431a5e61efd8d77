"""`moodstream calls`: the history database in the terminal (or as JSON): past sessions, or one session's timeline
and each party's summary."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from moodstream.history.database import Database


def show(db_url: str, session_id: str | None, limit: int, as_json: bool) -> int:
    """Print the listing or the session; 1 for a session the history does not have."""
    console = Console(highlight=False)
    with Database(db_url) as database:
        database.migrate()
        if session_id is None:
            sessions = database.sessions(limit)
            if as_json:
                console.print_json(json.dumps(sessions))
            else:
                console.print(sessions_table(sessions))
            return 0
        found = database.session(session_id)
    if found is None:
        console.print(f"[red]no session {session_id} in the history[/]")
        return 1
    if as_json:
        console.print_json(json.dumps(found))
    else:
        console.print(timeline_table(found["utterances"]))  # type: ignore[arg-type]
        console.print(parties_table(found["parties"]))  # type: ignore[arg-type]
    return 0


def sessions_table(sessions: list[dict]) -> Table:
    table = Table("session", "ended", "duration", "utterances", "parties", "silence", title="sessions, newest first")
    for row in sessions:
        duration = f"{row['duration_ms'] / 1000:.1f} s" if row["duration_ms"] is not None else "—"
        silence = f"{row['silence_share']:.0%}" if row["silence_share"] is not None else "—"
        table.add_row(str(row["session_id"]), str(row["end_reason"] or "open"), duration, str(row["utterances"] or "—"),
                      str(row["roles"] or row["channels"] or "—"), silence)  # fmt: skip
    return table


def timeline_table(utterances: list[dict]) -> Table:
    table = Table("time", "party", "fused", "emotion", "words", title="timeline")
    for row in utterances:
        span = f"{row['start_ms'] / 1000:.1f}–{row['end_ms'] / 1000:.1f} s"
        fused = f"{row['fused_label']} {row['fused_score']:+.2f}"
        table.add_row(span, str(row["role"] or ""), fused, str(row["emotion_label"] or ""), str(row["text"]))
    return table


def parties_table(parties: list[dict]) -> Table:
    table = Table("party", "utterances", "talk", "mean", "negative", "first → last quarter", "overlap",
                  "interruptions", "most negative", title="summary")  # fmt: skip
    for row in parties:
        change = f"{row['score_change']:+.2f}" if row["score_change"] is not None else "—"
        mean = f"{row['mean_score']:+.2f}" if row["mean_score"] is not None else "—"
        negative = f"{row['negative_share']:.0%}" if row["negative_share"] is not None else "—"
        low = f"{row['most_negative_score']:+.2f} {row['most_negative_text']}" if row["most_negative_text"] else "—"
        table.add_row(str(row["role"] or row["channel"]), str(row["utterances"]), f"{row['talk_ms'] / 1000:.1f} s",
                      mean, negative, change, f"{row['overlap_ms'] / 1000:.1f} s", str(row["interruptions"]),
                      low)  # fmt: skip
    return table
