"""The stage runtime: what every stage shell shares, and nothing stage-specific. Stages import this module; the
worker app (`worker.py`) imports the stages. Every record is validated on the way in (`StageContext.each_record`):
one that fails validation, or whose processing raises, goes to the dead-letter topic and the stage moves on. A record
sent with a partition (`StageContext.send`) is handed to this worker's next stage at once (`handoff.Handoffs`); the
next stage's consume loop then only waits for that work when the topic copy comes (`StageContext.after_handoff`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import faust
from faust.types import TP
from pydantic import ValidationError

from moodstream.clock import now_ms
from moodstream.processors.runtime.handoff import Handle, HandoffOptions, Handoffs, Work
from moodstream.schemas import SchemaError, decode, encode
from moodstream.schemas.errors import PROCESSING_FAILED
from moodstream.schemas.records import DeadLetter, ErrorEvent, Record
from moodstream.schemas.topics import DEAD_LETTER, EVENTS, HEALTH, TopicSpec
from moodstream.settings import Settings

log = logging.getLogger("moodstream.worker")

R = TypeVar("R", bound=Record)
S = TypeVar("S", bound=Record)
T = TypeVar("T")
# What each stage serves, by model: a version string, or a callable giving it once the model has loaded.
ModelVersions = dict[str, "str | Callable[[], str]"]


class Preloaded(Generic[T]):
    """A model loading on a background thread while Faust starts and joins the group; ``get()`` waits for it."""

    _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-load")

    def __init__(self, factory: Callable[[], T]) -> None:
        self.future: Future[T] = self._pool.submit(factory)

    def get(self) -> T:
        return self.future.result()


@dataclass
class StageContext:
    """What every stage's agents share: the app, settings, and helpers to send and dead-letter."""

    app: faust.App
    settings: Settings

    loading: list[Preloaded[Any]] = field(default_factory=list)
    counts: list[Callable[[], dict[str, int]]] = field(default_factory=list)
    """Counters stages report in the worker's heartbeat (each callable gives heartbeat fields and their values)."""
    handoffs: Handoffs = field(init=False)
    _sending: dict[str, faust.TopicT] = field(default_factory=dict)

    def __post_init__(self) -> None:
        options = HandoffOptions(enabled=self.settings.stage_handoff)
        self.handoffs = Handoffs(self._reads, options)
        self._reading: frozenset[tuple[str, int]] = frozenset()
        """(topic, partition) this worker reads, as of the last rebalance (the consumer builds the set anew on every
        call: too dear for every record sent)."""

        def forget_revoked(_app: faust.App, revoked: set[TP], **_kwargs: object) -> None:
            self._reading = frozenset()
            self.handoffs.forget({tp.partition for tp in revoked})  # topics are co-partitioned by session

        def note_assigned(_app: faust.App, _assigned: set[TP], **_kwargs: object) -> None:
            self._reading = frozenset((tp.topic, tp.partition) for tp in self.app.consumer.assignment())

        # local functions: keep them referenced
        self.app.on_partitions_revoked.connect(forget_revoked, weak=False)
        self.app.on_partitions_assigned.connect(note_assigned, weak=False)

    def _reads(self, spec: TopicSpec, partition: int) -> bool:
        """Whether this worker reads `partition` of `spec`'s current generation (where `emit` sends)."""
        return (self.settings.generations.name(spec), partition) in self._reading

    def preload(self, factory: Callable[[], T]) -> Preloaded[T]:
        """Load a model off the startup path (the worker reports ready only once every model has loaded)."""
        model = Preloaded(factory)
        self.loading.append(model)
        return model

    def topic(self, *specs: TopicSpec) -> faust.TopicT:
        """The topic an agent reads `specs` from: each one's rotating topics when topics rotate."""
        names = [name for spec in specs for name in self.settings.generations.names(spec)]
        return self.app.topic(*names, partitions=specs[0].partitions)

    async def emit(self, spec: TopicSpec, record: Record | None, key: str) -> None:
        """Send `record` keyed by `key` (None: a tombstone, for compacted topics) to `spec`'s current generation."""
        name = self.settings.generations.name(spec)
        value = encode(record) if record is not None else None
        await self._sending_topic(name, spec.partitions).send(key=key.encode(), value=value)
        if spec is not HEALTH:  # work in flight: what the stages read next may be on any topic, so no rest yet
            wake = getattr(self.app.consumer, "wake", None)
            if wake is not None:
                wake()

    async def send(self, spec: TopicSpec, record: Record, key: str, partition: int) -> None:
        """`emit`, then hand the record to this worker's consumers of `spec` if the copy lands in a partition this
        worker reads (`partition`: the session's, the same on every session-keyed topic)."""
        await self.emit(spec, record, key)
        self.handoffs.hand_off(spec, record, partition)

    def after_handoff(self, consumer: str, handle: Handle, *, then_handle: bool = False) -> Handle:
        """`handle` for `consumer`'s consume loop, waiting first for a record's handed-off work (`Handoffs.copies`)."""
        return self.handoffs.copies(consumer, handle, then_handle=then_handle)

    def _sending_topic(self, name: str, partitions: int) -> faust.TopicT:
        # Faust builds a whole channel for every `app.topic(...)`; a worker sends ~100 records a second
        if (topic := self._sending.get(name)) is None:
            topic = self._sending[name] = self.app.topic(name, partitions=partitions)
        return topic

    async def each_record(
        self,
        stream: faust.StreamT,
        expected: tuple[type[Record], ...],
        name: str,
        handle: Callable[[faust.EventT, Any], Awaitable[None]],
        *,
        manual_ack: bool = False,
    ) -> None:
        """The one consume loop of every stage: decode and validate each record, call `handle(event, record)`; a
        record that fails validation, or whose handling raises, goes to the dead-letter topic and the loop goes on.
        With `manual_ack` the stream does not ack by itself: `handle` acks (or holds) what it took, and this loop
        acks what it dead-lettered."""
        async for event in stream.events():
            try:
                record = decode(event.value, expected)
            except SchemaError as exc:
                await self._reject(stream, event, name, exc, manual_ack)
                continue
            try:
                await handle(event, record)
            except Exception as exc:  # one bad record must not stop the partition
                log.exception("%s failed on session %s", name, getattr(record, "session_id", "?"))
                await self._reject(stream, event, name, exc, manual_ack)

    async def _reject(
        self, stream: faust.StreamT, event: faust.EventT, name: str, error: Exception, manual_ack: bool
    ) -> None:
        await self.dead_letter(event, name, error)
        await self.tell_session(event, name)
        if manual_ack:
            await stream.ack(event)

    async def tell_session(self, event: faust.EventT, name: str) -> None:
        """An `error` event (processing_failed) to the session the rejected record was keyed by, if it names one."""
        key = event.message.key
        session_id = key.decode("utf-8", "replace") if isinstance(key, bytes) else ""
        try:
            notice = ErrorEvent(session_id=session_id, code=PROCESSING_FAILED.code,
                                message=f"the {name} stage could not process a record of this session")  # fmt: skip
        except ValidationError:  # the key is no session id: nobody to tell
            return
        await self.emit(EVENTS, notice, session_id)

    def route(self, spec: TopicSpec, consumer: str, work: Work) -> Handle:
        """Take hand-offs of `spec` for `consumer` (`work(record, partition)`); returns the consume loop's handle."""
        self.handoffs.route(spec, consumer, work)

        async def handle(event: faust.EventT, record: Any) -> None:
            await work(record, event.message.partition)

        return self.after_handoff(consumer, handle)

    def stateless(
        self,
        spec: TopicSpec,
        name: str,
        compute: Callable[[R], S],
        pool: Executor,
        send: Callable[[S, int], Awaitable[None]],
    ) -> Handle:
        """The work of a stateless stage on `spec`: `compute` runs in the stage's pool off the event loop, its result
        is sent (`send(result, partition)`); taken from hand-offs and topic copies alike (`route`)."""

        async def work(record: R, partition: int) -> None:
            await send(await asyncio.get_running_loop().run_in_executor(pool, compute, record), partition)

        return self.route(spec, name, work)

    async def dead_letter(self, event: faust.EventT, consumer: str, error: Exception) -> None:
        message = event.message
        key = message.key.decode("utf-8", "replace") if isinstance(message.key, bytes) else None
        log.warning("dead-lettering %s[%s]@%s: %s", message.topic, message.partition, message.offset, error)
        record = DeadLetter(
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=key,
            error=str(error)[:2000],
            consumer=consumer,
            at_ms=now_ms(),
            value=bytes(message.value or b"")[:1_000_000],
        )
        await self.emit(DEAD_LETTER, record, message.topic)
