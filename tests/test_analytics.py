"""Per-session aggregates: the core, and the HTTP consumer against the real broker."""

from __future__ import annotations

import time

import httpx
import pytest
from confluent_kafka import Producer

from moodstream.broker.embedded import free_port
from moodstream.cli.analytics import Aggregates
from moodstream.schemas import encode
from moodstream.schemas.records import FusedResult, FusionWeights
from moodstream.schemas.topics import EVENTS
from tests.conftest import Stack, process_env, spawn, stop


def result(session: str, seq: int, score: float, label: str, final: bool = True) -> FusedResult:
    return FusedResult(
        session_id=session,
        utterance_seq=seq,
        revision=1 if final else 0,
        final=final,
        start_ms=0,
        end_ms=1,
        text="",
        text_sentiment=None,
        audio_sentiment=None,
        fused_score=score,
        fused_label=label,
        weights=FusionWeights(text=0.5, audio=0.5),
        latencies_ms={},
        model_versions={},
    )


def test_rolling_mean_negative_share_trend_and_dedup() -> None:
    aggregates = Aggregates(window=3)
    assert aggregates.add(result("s", 0, -0.5, "negative"))
    assert not aggregates.add(result("s", 0, -0.5, "negative"))  # replayed duplicate
    assert not aggregates.add(result("s", 1, 0.9, "positive", final=False))  # degraded, not final
    for seq, score, label in ((1, 0.0, "neutral"), (2, 0.5, "positive"), (3, 1.0, "positive")):
        aggregates.add(result("s", seq, score, label))
    summary = aggregates.get("s")
    assert summary is not None
    assert summary["utterances"] == 4 and summary["window"] == 3
    assert summary["mean_fused_score"] == pytest.approx(0.5)
    assert summary["negative_share"] == 0.0
    assert summary["trend_per_utterance"] == pytest.approx(0.5)
    assert aggregates.get("unknown") is None


def test_http_consumer_serves_aggregates_from_the_events_topic(stack: Stack) -> None:
    session = f"analytics-{time.time_ns()}"
    producer = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    for seq, score, label in (
        (0, -0.6, "negative"),
        (1, -0.2, "negative"),
        (1, -0.2, "negative"),
        (2, 0.4, "positive"),
    ):
        producer.produce(EVENTS.name, key=session.encode(), value=encode(result(session, seq, score, label)))
    producer.flush(10)
    port = free_port()
    server = spawn(["analytics", "--port", str(port)], process_env(stack.bootstrap))
    try:
        deadline, summary = time.monotonic() + 40, None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/sessions/{session}", timeout=1)
                if response.status_code == 200 and response.json()["utterances"] == 3:
                    summary = response.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert summary is not None, "the consumer never served the session"
        assert summary["negative_share"] == pytest.approx(2 / 3, abs=1e-3)
        assert summary["mean_fused_score"] == pytest.approx(-0.1333, abs=1e-3)
        assert summary["last_label"] == "positive"
        assert httpx.get(f"http://127.0.0.1:{port}/sessions/nope").status_code == 404
    finally:
        stop([server])
