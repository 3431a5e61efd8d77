"""The history database: PostgreSQL (`postgresql://…`) or an embedded SQLite file (`sqlite:///path`), the same tables
in both. It creates and migrates its own tables; every write is an upsert by the table's key, so rows written again
(a replay after the store consumer restarts) change nothing. Tables (also in docs/architecture.md, for BI tools):

- `sessions`: one row per session: `session_id`, `last_result_at_ms`, `ended_at_ms`, `end_reason`, `duration_ms`,
  `utterances`, `channels`, `roles` (comma-separated, channel order), `silence_share`, `summarised_utterances`.
- `utterances`: one row per final result, keyed by (`session_id`, `utterance_seq`): `channel`, `role`, `start_ms`,
  `end_ms`, `text`, `fused_score`, `fused_label`, `text_label`, `voice_label`, `arousal`, `emotion_label`,
  `received_at_ms`.
- `parties`: one row per party of a summarised session, keyed by (`session_id`, `channel`): the summary's fields
  (docs/protocol.md), the most negative utterance as `most_negative_seq`, `_score`, `_text`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moodstream.history.rows import Row

MIGRATIONS: tuple[str, ...] = (
    """CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        last_result_at_ms DOUBLE PRECISION,
        ended_at_ms DOUBLE PRECISION,
        end_reason TEXT,
        duration_ms DOUBLE PRECISION,
        utterances INTEGER,
        channels INTEGER,
        roles TEXT,
        silence_share DOUBLE PRECISION,
        summarised_utterances INTEGER
    );
    CREATE TABLE utterances (
        session_id TEXT NOT NULL,
        utterance_seq INTEGER NOT NULL,
        channel INTEGER NOT NULL,
        role TEXT,
        start_ms DOUBLE PRECISION NOT NULL,
        end_ms DOUBLE PRECISION NOT NULL,
        text TEXT NOT NULL,
        fused_score DOUBLE PRECISION NOT NULL,
        fused_label TEXT NOT NULL,
        text_label TEXT,
        voice_label TEXT,
        arousal DOUBLE PRECISION,
        emotion_label TEXT,
        received_at_ms DOUBLE PRECISION,
        PRIMARY KEY (session_id, utterance_seq)
    );
    CREATE TABLE parties (
        session_id TEXT NOT NULL,
        channel INTEGER NOT NULL,
        role TEXT,
        utterances INTEGER NOT NULL,
        talk_ms DOUBLE PRECISION NOT NULL,
        mean_score DOUBLE PRECISION,
        negative_share DOUBLE PRECISION,
        most_negative_seq INTEGER,
        most_negative_score DOUBLE PRECISION,
        most_negative_text TEXT,
        first_quarter_score DOUBLE PRECISION,
        last_quarter_score DOUBLE PRECISION,
        score_change DOUBLE PRECISION,
        overlap_ms DOUBLE PRECISION NOT NULL,
        interruptions INTEGER NOT NULL,
        PRIMARY KEY (session_id, channel)
    );
    CREATE INDEX sessions_by_last_result ON sessions (last_result_at_ms)""",
)
"""Each migration's statements (`;`-separated); the database's `moodstream_schema` row says how many have run."""


class Database:
    """One connection to the history database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            import psycopg

            self.connection: Any = psycopg.connect(url)
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            # one writer at a time, but not always from the thread that connected (the store writes off its loop)
            self.connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
            self.connection.execute("PRAGMA journal_mode=WAL")  # readers (`moodstream calls`) beside the writer
        else:
            raise ValueError(f"unknown database URL {url!r}: postgresql://… or sqlite:///path")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        cursor = self.connection.cursor()
        try:
            yield cursor
            self.connection.commit()
        except BaseException:
            self.connection.rollback()
            raise
        finally:
            cursor.close()

    def migrate(self) -> int:
        """Run the migrations this database has not had; returns its schema version."""
        with self.transaction() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS moodstream_schema (version INTEGER NOT NULL)")
            cursor.execute("SELECT version FROM moodstream_schema")
            found = cursor.fetchone()
            version = found[0] if found else 0
            if found is None:
                cursor.execute("INSERT INTO moodstream_schema (version) VALUES (0)")
            for migration in MIGRATIONS[version:]:
                for statement in filter(str.strip, migration.split(";")):
                    cursor.execute(statement)
            cursor.execute(self._sql("UPDATE moodstream_schema SET version = %s"), (len(MIGRATIONS),))
        return len(MIGRATIONS)

    def write(self, rows: Sequence[Row]) -> None:
        """Upsert every row, in one transaction."""
        with self.transaction() as cursor:
            for row in rows:
                cursor.execute(self._sql(upsert(row)), tuple(row.values.values()))

    def query(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, object]]:
        """Rows of a read-only query (`%s` placeholders) as dicts."""
        with self.transaction() as cursor:
            cursor.execute(self._sql(sql), tuple(params))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    def sessions(self, limit: int) -> list[dict[str, object]]:
        """The latest sessions, newest first."""
        return self.query(
            "SELECT session_id, ended_at_ms, end_reason, duration_ms, utterances, channels, roles, silence_share "
            "FROM sessions ORDER BY COALESCE(ended_at_ms, last_result_at_ms) DESC LIMIT %s",
            (limit,),
        )

    def session(self, session_id: str) -> dict[str, object] | None:
        """One session: its row, its utterances in time order and its parties' summary (None: not in the history)."""
        found = self.query("SELECT * FROM sessions WHERE session_id = %s", (session_id,))
        if not found:
            return None
        utterances = self.query(
            "SELECT utterance_seq, channel, role, start_ms, end_ms, fused_score, fused_label, emotion_label, text "
            "FROM utterances WHERE session_id = %s ORDER BY start_ms, utterance_seq",
            (session_id,),
        )
        parties = self.query("SELECT * FROM parties WHERE session_id = %s ORDER BY channel", (session_id,))
        return {"session": found[0], "utterances": utterances, "parties": parties}

    def _sql(self, sql: str) -> str:
        return sql if self.postgres else sql.replace("%s", "?")


def upsert(row: Row) -> str:
    """INSERT … ON CONFLICT (key) DO UPDATE of the row's other columns (PostgreSQL and SQLite ≥ 3.24 alike)."""
    columns = list(row.values)
    others = [c for c in columns if c not in row.key]
    update = ", ".join(f"{c} = excluded.{c}" for c in others)
    action = f"DO UPDATE SET {update}" if others else "DO NOTHING"
    placeholders = ", ".join(["%s"] * len(columns))
    return (f"INSERT INTO {row.table} ({', '.join(columns)}) VALUES ({placeholders}) "
            f"ON CONFLICT ({', '.join(row.key)}) {action}")  # fmt: skip
