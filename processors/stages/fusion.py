"""Fusion stage shell: each utterance's acoustic scores and text score in, fused results out.

Both score topics are keyed by session and produced by the workers with the same partitioner, so one agent on both
sees everything of a session. The join is `fusion_join.FusionJoin` (its docstring states the invariants); this shell
decodes, calls it, sends its results and acks what it releases. Scores this worker's acoustic and ASR stages send
are handed off at once (`runtime.handoff`); their topic copies come later and are acked with the utterance.
"""

from __future__ import annotations

import time

import faust
from faust.types import TP

from moodstream.broker.generations import is_topic
from moodstream.clock import now_ms
from moodstream.processors.fusion import Fuser, FusionOptions
from moodstream.processors.fusion_join import FusionJoin, JoinOptions, JoinStep
from moodstream.processors.runtime.context import ModelVersions, StageContext
from moodstream.schemas.records import AcousticScore, TextScore
from moodstream.schemas.topics import ACOUSTIC_SCORES, EVENTS, TEXT_SCORES


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
    streams: list[faust.StreamT] = []  # the agent's manual-ack stream, for the timer's acks

    async def carry_out(step: JoinStep[faust.EventT | None]) -> None:
        for result in step.results:
            await ctx.emit(EVENTS, result, result.session_id)
        for event in step.acks:
            if event is not None:  # None: a hand-off, which has no offset; its topic copy is acked
                await streams[0].ack(event)

    async def on_score(record: AcousticScore | TextScore, token: faust.EventT | None, partition: int) -> None:
        await carry_out(join.on_score(record, token, partition, time.monotonic(), now_ms()))

    async def take_handoff(record: AcousticScore | TextScore, partition: int) -> None:
        await on_score(record, None, partition)

    for spec in (ACOUSTIC_SCORES, TEXT_SCORES):
        ctx.handoffs.route(spec, "fusion", take_handoff)

    async def handle(event: faust.EventT, record: AcousticScore | TextScore) -> None:
        await on_score(record, event, event.message.partition)  # a handed-off twin counts once (`FusionJoin`)

    @ctx.app.agent(topic, name="fusion")
    async def fusion(stream: faust.StreamT) -> None:
        manual = stream.noack()
        streams[:] = [manual]
        copies = ctx.after_handoff("fusion", handle, then_handle=True)
        await ctx.each_record(manual, (AcousticScore, TextScore), "fusion", copies, manual_ack=True)

    def forget_revoked(_app: faust.App, revoked: set[TP], **_kwargs: object) -> None:
        scores = (ACOUSTIC_SCORES, TEXT_SCORES)
        join.forget({tp.partition for tp in revoked if any(is_topic(tp.topic, spec) for spec in scores)})

    ctx.app.on_partitions_revoked.connect(forget_revoked, weak=False)

    @ctx.app.timer(interval=0.25)
    async def degrade_late() -> None:
        if streams:
            await carry_out(join.tick(time.monotonic(), now_ms()))

    return {}
