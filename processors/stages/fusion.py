"""Fusion stage shell: each utterance's acoustic scores and text score in, fused results out; each session's end in,
its summary out once its final results are in.

Both score topics are keyed by session and produced by the workers with the same partitioner, so one agent on both
sees everything of a session. The join is `fusion_join.FusionJoin` (its docstring states the invariants); this shell
decodes, calls it, sends its results and acks what it releases. Scores this worker's acoustic and ASR stages send
are handed off at once (`runtime.handoff`); their topic copies come later and are acked with the utterance.
Each final result is counted in its session's tally (`summary`), which is stored (`runtime.checkpoints.TallyStore`)
before the scores it came from are acked; a worker taking the partition over reads the tallies and goes on.
"""

from __future__ import annotations

import asyncio
import time

import faust
from faust.types import TP

from moodstream.broker.generations import is_topic
from moodstream.clock import now_ms
from moodstream.processors.fusion import Fuser, FusionOptions
from moodstream.processors.fusion_join import FusionJoin, JoinOptions, JoinStep
from moodstream.processors.runtime.checkpoints import TallyStore
from moodstream.processors.runtime.context import ModelVersions, StageContext
from moodstream.processors.summary import count_end, count_result, summarize, summary_due
from moodstream.schemas.records import AcousticScore, FusedResult, SessionEnded, SessionTally, TextScore
from moodstream.schemas.topics import ACOUSTIC_SCORES, EVENTS, TALLIES, TEXT_SCORES, partition_for

DEADLINE_TICK_S = 0.25
"""How often the join's deadlines (`JoinOptions`) are checked while it holds an utterance."""

Scored = AcousticScore | TextScore | SessionEnded
"""What the fusion agent reads: the scores it joins, and each session's end."""


class SummaryShell:
    """Counts final results and ends in their sessions' tallies, stores each tally before the acks of what it
    counts, and sends a session's summary once it is due (`summary`)."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.tallies = TallyStore(ctx.settings)
        self.lock = asyncio.Lock()
        """Hand-offs run as tasks of their own: each read-count-store of a tally runs alone, or two would each count
        into the same old tally and the later store would drop the other's count."""

    async def on_result(self, result: FusedResult, partition: int) -> None:
        async with self.lock:
            tally = await self.tallies.get(result.session_id, partition)
            await self.keep(count_result(tally, result), partition)

    async def on_end(self, ended: SessionEnded, partition: int) -> None:
        async with self.lock:
            tally = await self.tallies.get(ended.session_id, partition)
            await self.keep(count_end(tally, ended), partition)

    async def keep(self, tally: SessionTally | None, partition: int) -> None:
        """Store a changed tally; send the summary it makes due, then store it as summarised."""
        if tally is None:
            return
        if summary_due(tally):
            await self.ctx.emit(EVENTS, summarize(tally), tally.session_id)
            tally = tally.model_copy(update={"summarized": True})
        await self.ctx.emit(TALLIES, tally, tally.session_id)
        await self.tallies.put(tally.session_id, partition, tally)


def register(ctx: StageContext) -> ModelVersions:
    settings = ctx.settings
    join: FusionJoin[faust.EventT | None] = FusionJoin(
        Fuser(
            FusionOptions(
                text_weight=settings.fusion_text_weight,
                voice_calm_below=settings.fusion_voice_calm_below,
                voice_emotional_above=settings.fusion_voice_emotional_above,
                voice_agitation_from=settings.fusion_voice_agitation_from,
                voice_agitated_above=settings.fusion_voice_agitated_above,
                encoder_voice_weight=settings.fusion_encoder_voice_weight,
            )
        ),
        JoinOptions(degrade_after_s=settings.fusion_degrade_after_s, give_up_after_s=settings.fusion_give_up_after_s),
    )
    topic = ctx.topic(ACOUSTIC_SCORES, TEXT_SCORES)
    streams: list[faust.StreamT] = []  # the agent's manual-ack stream, for the deadline task's acks
    holding = asyncio.Event()  # set when the join holds an utterance: the deadline task runs only then
    summaries = SummaryShell(ctx)

    async def carry_out(step: JoinStep[faust.EventT | None]) -> None:
        for result in step.results:
            await ctx.emit(EVENTS, result, result.session_id)
            await summaries.on_result(result, partition_for(result.session_id))
        await ack(step.acks)

    async def ack(tokens: list[faust.EventT | None]) -> None:
        for event in tokens:
            if event is not None:  # None: a hand-off, which has no offset; its topic copy is acked
                await streams[0].ack(event)

    async def on_score(record: Scored, token: faust.EventT | None, partition: int) -> None:
        if isinstance(record, SessionEnded):
            await summaries.on_end(record, partition)
            await ack([token])
        else:
            await carry_out(join.on_score(record, token, partition, time.monotonic(), now_ms()))
            if join.pending:
                holding.set()

    async def take_handoff(record: Scored, partition: int) -> None:
        await on_score(record, None, partition)

    for spec in (ACOUSTIC_SCORES, TEXT_SCORES):
        ctx.handoffs.route(spec, "fusion", take_handoff)

    async def handle(event: faust.EventT, record: Scored) -> None:
        await on_score(record, event, event.message.partition)  # a handed-off twin counts once (`FusionJoin`)

    @ctx.app.agent(topic, name="fusion")
    async def fusion(stream: faust.StreamT) -> None:
        manual = stream.noack()
        streams[:] = [manual]
        copies = ctx.after_handoff("fusion", handle, then_handle=True)
        await ctx.each_record(manual, (AcousticScore, TextScore, SessionEnded), "fusion", copies, manual_ack=True)

    def forget_revoked(_app: faust.App, revoked: set[TP], **_kwargs: object) -> None:
        scores = (ACOUSTIC_SCORES, TEXT_SCORES)
        partitions = {tp.partition for tp in revoked if any(is_topic(tp.topic, spec) for spec in scores)}
        join.forget(partitions)
        summaries.tallies.forget(partitions)

    ctx.app.on_partitions_revoked.connect(forget_revoked, weak=False)

    @ctx.app.task
    async def degrade_late() -> None:
        """Tick the join every `DEADLINE_TICK_S` while it holds an utterance (late text degrades, missing scores give
        up), and sleep while it holds none: a fixed timer would wake a resting worker four times a second for nothing.
        """
        while True:
            await holding.wait()
            while join.pending:
                await asyncio.sleep(DEADLINE_TICK_S)
                if streams:
                    await carry_out(join.tick(time.monotonic(), now_ms()))
            holding.clear()  # no await since the loop saw the join empty: no utterance came in between

    @ctx.app.timer(interval=10.0)
    async def expire_tallies() -> None:
        """A tally is kept in memory as long as its session may still resume (`resume_ttl_s`), not for ever."""
        summaries.tallies.expire()

    return {}
