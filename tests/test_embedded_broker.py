"""The embedded broker's process: how many runtime threads it is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodstream.broker.embedded import RUNTIME_THREADS, EmbeddedBroker


def runtime_threads_of(broker: EmbeddedBroker) -> str | None:
    assert broker.process is not None
    for entry in Path(f"/proc/{broker.process.pid}/environ").read_bytes().split(b"\0"):
        name, _, value = entry.decode().partition("=")
        if name == "TOKIO_WORKER_THREADS":
            return value
    return None


def test_the_broker_runs_one_runtime_thread_unless_the_operator_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKIO_WORKER_THREADS", raising=False)
    with EmbeddedBroker() as broker:
        assert runtime_threads_of(broker) == RUNTIME_THREADS == "1"
    monkeypatch.setenv("TOKIO_WORKER_THREADS", "3")
    with EmbeddedBroker() as broker:
        assert runtime_threads_of(broker) == "3"
