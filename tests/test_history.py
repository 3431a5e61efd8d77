"""The history database: what each record becomes (pure), the tables on a real PostgreSQL and on the embedded SQLite
file (created, migrated, each row once however often it is written), and the store consumer killed -9 in the middle
of a call and restarted: every utterance of the call is there exactly once, with its party and the summary."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moodstream.history.database import MIGRATIONS, Database
from moodstream.history.rows import rows_of
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import stream_pcm
from moodstream.schemas.records import (
    FusedResult,
    PartySummary,
    SentimentScores,
    SessionEnded,
    SessionSummary,
    UtteranceRef,
)
from tests.conftest import Stack, process_env, spawn, stop, write_call_wav


def result(seq: int, final: bool = True) -> FusedResult:
    return FusedResult(
        session_id="s1", utterance_seq=seq, final=final, start_ms=seq * 1000.0, end_ms=seq * 1000.0 + 800,
        text=f"words {seq}", text_sentiment=None, audio_sentiment=None, fused_score=-0.5, fused_label="negative",
        weights={"text": 0.5, "audio": 0.5}, latencies_ms={}, model_versions={}, channel=seq % 2,
        role=("agent", "customer")[seq % 2],
    )  # fmt: skip


ENDED = SessionEnded(session_id="s1", utterances=2, awaiting_results=True, reason="client", duration_ms=3000.0,
                     channel_utterances=[1, 1], roles=("agent", "customer"), awaiting_summary=True)  # fmt: skip
LOW = UtteranceRef(utterance_seq=1, start_ms=1000.0, end_ms=1800.0, fused_score=-0.5, text="words 1")
PARTY = PartySummary(channel=1, role="customer", utterances=1, talk_ms=800.0, mean_score=-0.5, negative_share=1.0,
                     most_negative=LOW, first_quarter_score=None, last_quarter_score=None, score_change=None,
                     overlap_ms=0.0, interruptions=0)  # fmt: skip
SUMMARY = SessionSummary(session_id="s1", reason="client", duration_ms=3000.0, utterances=2, parties=[PARTY],
                         silence_share=0.47)  # fmt: skip


def test_final_results_ends_and_summaries_become_rows_and_nothing_else_does() -> None:
    assert [row.table for row in rows_of(result(0), 1.0)] == ["sessions", "utterances"]
    assert rows_of(result(0, final=False), 1.0) == []
    [utterance] = [row for row in rows_of(result(1), 1.0) if row.table == "utterances"]
    assert utterance.key == ("session_id", "utterance_seq") and utterance.values["role"] == "customer"
    judged = result(2).model_copy(
        update={
            "text_sentiment": SentimentScores(negative=0.7, neutral=0.2, positive=0.1),
            "audio_sentiment": SentimentScores(negative=0.1, neutral=0.8, positive=0.1),
        }
    )
    [utterance] = [row for row in rows_of(judged, 1.0) if row.table == "utterances"]
    assert (utterance.values["text_label"], utterance.values["voice_label"]) == ("negative", "neutral")
    [ended] = rows_of(ENDED, 2.0)
    assert ended.values["roles"] == "agent,customer" and ended.values["channels"] == 2
    assert [row.table for row in rows_of(SUMMARY, 3.0)] == ["sessions", "parties"]


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite3'}"
    url = request.getfixturevalue("postgres")
    with Database(url) as database:  # a clean slate: each test starts from an empty database
        with database.transaction() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE")
            cursor.execute("CREATE SCHEMA public")
    return url


def test_the_tables_are_created_once_and_rows_written_again_stay_one(database_url: str) -> None:
    with Database(database_url) as database:
        assert database.migrate() == len(MIGRATIONS)
        assert database.migrate() == len(MIGRATIONS)  # again: nothing to do
        rows = [row for record in (result(0), result(1), ENDED, SUMMARY) for row in rows_of(record, 5.0)]
        database.write(rows)
        database.write(rows)  # a replay
        assert database.query("SELECT COUNT(*) AS n FROM utterances")[0]["n"] == 2
        [session] = database.query("SELECT * FROM sessions")
        # three records wrote parts of the session's row; each kept the others'
        assert (session["end_reason"], session["utterances"], session["silence_share"]) == ("client", 2, 0.47)
        assert session["last_result_at_ms"] == 5.0
        [party] = database.query("SELECT * FROM parties")
        assert (party["role"], party["most_negative_text"]) == ("customer", "words 1")


def moodstream(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moodstream", *args, "--db", db], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def rows_of_session(url: str, session_id: str) -> tuple[list[dict], list[dict]]:
    with Database(url) as database:
        database.migrate()
        found = database.session(session_id)
    return (found["utterances"], found["parties"]) if found else ([], [])  # type: ignore[return-value]


@pytest.mark.stack  # starts its own processes
async def test_the_store_killed_mid_call_and_restarted_keeps_every_utterance_once(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    call = tmp_path / "call.wav"
    write_call_wav(call)
    env = process_env(stack.bootstrap)
    store = spawn(["store", "--db", database_url], env)
    try:
        options = {"channels": 2, "roles": ["agent", "customer"]}
        client = asyncio.create_task(
            stream_pcm(stack.ws, load_pcm16(call, channels=2), frame_ms=20, realtime=True, options=options)
        )
        await asyncio.sleep(9.0)  # the agent's first two results are in, the customer still speaks
        store.send_signal(signal.SIGKILL)
        store.wait()
        store = spawn(["store", "--db", database_url], env)
        messages = await asyncio.wait_for(client, 90)
        session = messages[0]["session_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            utterances, parties = await asyncio.to_thread(rows_of_session, database_url, session)
            if len(utterances) >= 5 and len(parties) == 2:
                break
            await asyncio.sleep(0.5)
    finally:
        stop([store])
    finals = {m["utterance_seq"]: m for m in messages if m["type"] == "utterance" and m["final"]}
    assert sorted(row["utterance_seq"] for row in utterances) == sorted(finals) == [0, 1, 2, 3, 4]
    assert all(row["role"] == finals[row["utterance_seq"]]["role"] for row in utterances)
    assert [(p["role"], p["utterances"]) for p in parties] == [("agent", 3), ("customer", 2)]
    listing = moodstream("calls", "--json", db=database_url)
    assert listing.returncode == 0 and session in {row["session_id"] for row in json.loads(listing.stdout)}
    shown = moodstream("calls", session, db=database_url)
    assert shown.returncode == 0 and "customer" in shown.stdout and "timeline" in shown.stdout
