"""Hand-offs between the stages of one worker: a record a stage sends to a session-keyed topic is also handed at once
to the stages of this worker that read that topic, when this worker owns the partition its topic copy lands in, so the
next stage of a session starts without waiting for the broker. The topics stay the record of what happened (and the
path of every record no hand-off carried: another worker's, a replay, a partition that moved).

Invariants (the topic path's guarantees, unchanged):
- A record is sent to its topic before it is handed off; the hand-off only starts the consumer's work early.
- The consumer acks the topic copy only after the early work has finished, and so after its outputs were sent: no
  offset is committed past a record whose outputs are not out, and a worker that dies replays it as before.
- A hand-off is claimed once, by its topic copy (same consumer, same session, same record identity). A copy that
  finds none is processed as before; so is every record once hand-offs are off or a consumer has `max_in_flight`
  hand-offs running (the backlog then waits in the broker, as it did).
- Hand-offs of partitions this worker gives up are forgotten: their copies go to the next owner, which processes them
  again; a result sent twice keeps its identity and the gateway drops the second.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from moodstream.schemas.records import Record
from moodstream.schemas.topics import TopicSpec

log = logging.getLogger("moodstream.worker")

Work = Callable[[Any, int], Awaitable[None]]
"""A consumer's work on one record: (record, its partition); it sends its outputs before it returns."""
Handle = Callable[[Any, Any], Awaitable[None]]
"""A consume loop's handling of one topic copy: (its token, e.g. a Faust event; the record)."""
Key = tuple[str, str, tuple[object, ...]]
"""(consumer, session id, record identity)."""


@dataclass(frozen=True)
class HandoffOptions:
    """When records are handed off."""

    enabled: bool = True
    """Off: every record goes through the broker, as before hand-offs."""
    max_in_flight: int = 64
    """Hand-offs whose work a consumer may have running at once; past it, records wait in the broker, as before (a
    bound on memory when a stage falls behind)."""
    max_unclaimed: int = 10_000
    """Hand-offs remembered for their topic copies; the oldest is forgotten past it (its copy is then processed
    again, which the invariants allow)."""


@dataclass
class Handoff:
    partition: int
    work: asyncio.Task[None]


class Handoffs:
    """This worker's routes (topic → consumers) and hand-offs not yet claimed by their topic copies. Event-loop only."""

    def __init__(self, owns: Callable[[TopicSpec, int], bool], options: HandoffOptions | None = None) -> None:
        self.owns = owns
        """Whether this worker reads `partition` of the topic: only then does the topic copy come back here."""
        self.options = options or HandoffOptions()
        self.routes: dict[str, dict[str, Work]] = {}
        """topic name → consumer → its work."""
        self.waiting: collections.OrderedDict[Key, Handoff] = collections.OrderedDict()
        self.running: collections.Counter[str] = collections.Counter()
        """consumer → hand-offs whose work has not finished."""
        self.handed_off = 0
        """Hand-offs started since this worker started (its heartbeat reports it)."""

    def route(self, spec: TopicSpec, consumer: str, work: Work) -> None:
        """`consumer` reads `spec` in this worker and takes hand-offs of it (registering again replaces)."""
        self.routes.setdefault(spec.name, {})[consumer] = work

    def hand_off(self, spec: TopicSpec, record: Record, partition: int) -> int:
        """Start each route's work on `record`, just sent to `partition` of `spec`; returns how many started."""
        routes = self.routes.get(spec.name)
        if not self.options.enabled or not routes or not self.owns(spec, partition):
            return 0
        session_id = str(getattr(record, "session_id", ""))
        started = 0
        for consumer, work in routes.items():
            key = (consumer, session_id, record.identity())
            if key in self.waiting or self.running[consumer] >= self.options.max_in_flight:
                continue  # a second copy of one record, or a consumer behind: the topic path takes it
            self.running[consumer] += 1
            task = asyncio.ensure_future(work(record, partition))
            task.add_done_callback(lambda done, consumer=consumer: self._finished(consumer, done))
            self.waiting[key] = Handoff(partition, task)
            if len(self.waiting) > self.options.max_unclaimed:
                self.waiting.popitem(last=False)
            started += 1
        self.handed_off += started
        return started

    def claim(self, consumer: str, record: Record) -> asyncio.Task[None] | None:
        """The early work on `record` for `consumer`, if it was handed off (each hand-off is claimed once)."""
        key = (consumer, str(getattr(record, "session_id", "")), record.identity())
        handoff = self.waiting.pop(key, None)
        return handoff.work if handoff else None

    def copies(self, consumer: str, handle: Handle, *, then_handle: bool = False) -> Handle:
        """`handle(token, record)` for `consumer`'s topic copies: a copy whose record was handed off waits for that
        work, then is done (or, with `then_handle`, handled too: a stateful consumer that acks by its own rule and
        counts a record once); any other copy is handled."""

        async def handle_copy(token: Any, record: Any) -> None:
            if (early := self.claim(consumer, record)) is not None:
                await early  # its failure raises here: the copy is dead-lettered, as the record would have been
                if not then_handle:
                    return
            await handle(token, record)

        return handle_copy

    def forget(self, partitions: set[int]) -> None:
        """Drop the hand-offs of partitions given up: their topic copies are read by the next owner, not here."""
        for key in [key for key, h in self.waiting.items() if h.partition in partitions]:
            del self.waiting[key]

    def _finished(self, consumer: str, work: asyncio.Task[None]) -> None:
        self.running[consumer] -= 1
        # read the exception here too: the topic copy that claims the work raises it again and is dead-lettered
        if not work.cancelled() and (error := work.exception()) is not None:
            log.warning("%s failed on a hand-off (%s); its topic copy will be dead-lettered", consumer, error)
