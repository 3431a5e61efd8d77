"""The worker's checkpoint store forgets the checkpoints of sessions nobody can resume any more (bounded state)."""

from __future__ import annotations

import asyncio
import time

from moodstream.settings import Settings
from processors.checkpoints import CheckpointStore
from schemas.records import SessionCheckpoint


def test_a_checkpoint_outliving_every_resume_token_is_forgotten() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", max_session_s=100.0, resume_window_s=20.0)
    store = CheckpointStore(settings)
    assert store.ttl_s == 120.0 == settings.resume_ttl_s

    async def scenario() -> tuple[SessionCheckpoint | None, SessionCheckpoint | None, int, int]:
        now = time.time()
        old = SessionCheckpoint(session_id="old", next_utterance_seq=3, resume_sample=100)
        new = SessionCheckpoint(session_id="new", next_utterance_seq=1, resume_sample=50)
        loaded = asyncio.get_running_loop().create_future()
        loaded.set_result({"old": (old, now - 121.0), "new": (new, now - 5.0)})
        store._loads[0] = loaded  # as if partition 0 had been read from the checkpoint topic
        expired_read = await store.get("old", 0)  # too old to resume: not served even before the sweep
        kept = await store.get("new", 0)
        return expired_read, kept, store.expire(), len(loaded.result())

    expired_read, kept, dropped, left = asyncio.run(scenario())
    assert expired_read is None and kept is not None and kept.next_utterance_seq == 1
    assert dropped == 1 and left == 1
