"""Per-session rolling aggregates of fused results, served over HTTP: `moodstream analytics`.

An example of a downstream consumer: it reads `moodstream.events` in its own consumer group (so several instances
share the partitions), keeps final results only, dedupes by (session, utterance seq) as the contract allows
at-least-once delivery, and serves `GET /sessions` and `GET /sessions/{id}`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from moodstream.schemas.records import FusedResult
from moodstream.settings import Settings


@dataclass
class SessionAggregate:
    """Rolling view of one session's final results."""

    window: int
    scores: collections.deque[tuple[int, float, str]] = field(default_factory=collections.deque)
    seen: set[int] = field(default_factory=set)
    utterances: int = 0
    updated_at: float = 0.0

    def add(self, result: FusedResult) -> bool:
        """Add a final result; False for a duplicate or a non-final one."""
        if not result.final or result.utterance_seq in self.seen:
            return False
        self.seen.add(result.utterance_seq)
        self.utterances += 1
        self.scores.append((result.utterance_seq, result.fused_score, result.fused_label))
        while len(self.scores) > self.window:
            self.scores.popleft()
        self.updated_at = time.time()
        return True

    def summary(self) -> dict:
        ordered = sorted(self.scores)
        values = np.array([s for _, s, _ in ordered], dtype=np.float64)
        trend = float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) >= 2 else 0.0
        return {
            "utterances": self.utterances,
            "window": len(values),
            "mean_fused_score": round(float(values.mean()), 4) if len(values) else None,
            "negative_share": round(sum(label == "negative" for _, _, label in ordered) / len(ordered), 4)
            if ordered
            else None,
            "trend_per_utterance": round(trend, 4),
            "last_label": ordered[-1][2] if ordered else None,
            "updated_at": self.updated_at,
        }


class Aggregates:
    """All sessions; thread-safe (the Kafka thread writes, the HTTP handlers read)."""

    def __init__(self, window: int = 20, max_sessions: int = 100_000) -> None:
        self.window = window
        self.max_sessions = max_sessions
        self._sessions: collections.OrderedDict[str, SessionAggregate] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, result: FusedResult) -> bool:
        with self._lock:
            aggregate = self._sessions.get(result.session_id)
            if aggregate is None:
                aggregate = self._sessions[result.session_id] = SessionAggregate(self.window)
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            return aggregate.add(result)

    def get(self, session_id: str) -> dict | None:
        with self._lock:
            aggregate = self._sessions.get(session_id)
            return aggregate.summary() if aggregate else None

    def all(self) -> dict[str, dict]:
        with self._lock:
            return {sid: agg.summary() for sid, agg in self._sessions.items()}


def consume_forever(settings: Settings, aggregates: Aggregates, stop: threading.Event) -> None:
    asyncio.run(_consume(settings, aggregates, stop))


async def _consume(settings: Settings, aggregates: Aggregates, stop: threading.Event) -> None:
    """Fused results from the events topic (all its rotating topics, when topics rotate), with a consumer group of our
    own; aiokafka, since librdkafka crashes when a topic it has read is re-created, as the embedded broker's keeper
    does to rotating topics."""
    from aiokafka import AIOKafkaConsumer

    from moodstream.broker.generations import topic_pattern
    from moodstream.broker.rotation import refuse_auto_topic_creation, reread_emptied, rest_finished
    from moodstream.schemas import SchemaError, decode
    from moodstream.schemas.topics import EVENTS

    refuse_auto_topic_creation()
    consumer = AIOKafkaConsumer(**settings.aiokafka_config(), group_id="moodstream-analytics",
                                auto_offset_reset="earliest", metadata_max_age_ms=5_000)  # fmt: skip
    consumer.subscribe(pattern=topic_pattern(EVENTS))
    await consumer.start()
    try:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    try:
                        record = decode(message.value)
                    except SchemaError:
                        continue
                    if isinstance(record, FusedResult):
                        aggregates.add(record)
            reread_emptied(consumer)
            rest_finished(consumer, settings.generations)
    finally:
        await consumer.stop()


def create_app(settings: Settings, window: int = 20):  # returns a Starlette app
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    aggregates = Aggregates(window)
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        thread = threading.Thread(target=consume_forever, args=(settings, aggregates, stop), daemon=True)
        thread.start()
        yield
        stop.set()
        await asyncio.to_thread(thread.join, 5)

    async def sessions(_request: Request) -> JSONResponse:
        return JSONResponse(aggregates.all())

    async def session(request: Request) -> JSONResponse:
        summary = aggregates.get(request.path_params["session_id"])
        return JSONResponse(summary or {"error": "unknown session"}, status_code=200 if summary else 404)

    return Starlette(routes=[Route("/sessions", sessions), Route("/sessions/{session_id}", session)], lifespan=lifespan)
