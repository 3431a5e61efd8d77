"""Fusion stage: joins each utterance's acoustic scores (windows and whole) with its text score and sends the result.

Both score topics are keyed by session and produced by the workers with the same partitioner, so one agent on both
sees everything of a session. If the text is late by `degrade_after_s` after the whole-utterance acoustic score, an
acoustic-only result (revision 0, final false) goes out, and the fused one (revision 1) follows when the text comes.
The events of an utterance stay unacked until its final result is sent, so a worker crash replays them; revisions
are fixed by kind, so a replayed result has the identity of the original and the gateway drops it.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field

import faust
from faust.types import TP

from processors.fusion import Fuser
from processors.worker import ModelVersions, StageContext, now_ms
from schemas import SchemaError, decode
from schemas.records import AcousticScore, FusedResult, FusionWeights, SentimentScores, TextScore
from schemas.topics import ACOUSTIC_SCORES, EVENTS, TEXT_SCORES

log = logging.getLogger("moodstream.fusion")

DEGRADE_AFTER_S = 3.0
GIVE_UP_AFTER_S = 60.0


@dataclass
class Pending:
    windows: list[dict[str, float]] = field(default_factory=list)
    whole: AcousticScore | None = None
    whole_at: float = 0.0
    text: TextScore | None = None
    degraded_sent: bool = False
    created: float = field(default_factory=time.monotonic)
    events: list[faust.EventT] = field(default_factory=list)
    partition: int = 0


def register(ctx: StageContext) -> ModelVersions:
    fuser = Fuser(ctx.settings.fusion_options())
    pending: dict[tuple[str, int], Pending] = {}
    finished: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
    topic = ctx.app.topic(ACOUSTIC_SCORES.name, TEXT_SCORES.name, partitions=ACOUSTIC_SCORES.partitions)
    stream_ref: list[faust.StreamT] = []

    def result(key: tuple[str, int], state: Pending, final: bool) -> FusedResult:
        text = state.text if state.text is not None and state.text.has_text else None
        audio = fuser.audio_distribution(state.whole.sentiment.model_dump() if state.whole else None, state.windows)
        fused = fuser.fuse(
            text.sentiment.model_dump() if text else None,
            audio,
            text.asr_avg_logprob if text else None,
            alpha=text.fusion_alpha if text else None,  # the session's own weight; without text it is 0 anyway
        )
        origin = (
            state.text.last_frame_received_at_ms if state.text else (state.whole.received_at_ms if state.whole else 0)
        )
        latencies = {"pipeline": round(max(0.0, now_ms() - origin), 1) if origin else 0.0}
        versions: dict[str, str] = {}
        if state.whole:
            latencies["acoustic"] = state.whole.compute_ms
            versions["acoustic"] = state.whole.model_version
        if state.text:
            latencies["asr"] = state.text.asr_compute_ms
            latencies["text"] = state.text.compute_ms
            versions["asr"] = state.text.asr_model
            versions["text"] = state.text.model_version
        span = state.whole or state.text
        return FusedResult(
            session_id=key[0],
            utterance_seq=key[1],
            revision=1 if final else 0,
            final=final,
            start_ms=span.start_ms if span else 0.0,
            end_ms=span.end_ms if span else 0.0,
            text=text.text if text else "",
            text_sentiment=text.sentiment if text else None,
            audio_sentiment=SentimentScores(**fused.audio_sentiment) if fused.audio_sentiment else None,
            fused_score=round(fused.score, 4),
            fused_label=fused.label,  # type: ignore[arg-type]
            weights=FusionWeights(
                text=round(fused.text_weight, 4),
                audio=round(1 - fused.text_weight, 4),
                voice_commitment=round(fused.voice_commitment, 4),
            ),
            latencies_ms=latencies,
            model_versions=versions,
            last_frame_received_at_ms=origin,
        )

    async def finish(key: tuple[str, int], state: Pending) -> None:
        await ctx.emit(EVENTS, result(key, state, final=True), key[0])
        pending.pop(key, None)
        finished[key] = None
        while len(finished) > 100_000:
            finished.popitem(last=False)
        for event in state.events:
            await stream_ref[0].ack(event)

    @ctx.app.agent(topic, name="fusion")
    async def fusion(stream: faust.StreamT) -> None:
        manual = stream.noack()
        stream_ref[:] = [manual]
        async for event in manual.events():
            try:
                record = decode(event.value, (AcousticScore, TextScore))
            except SchemaError as exc:
                await ctx.dead_letter(event, "fusion", exc)
                await manual.ack(event)
                continue
            key = (record.session_id, record.utterance_seq)
            if key in finished:  # a late window, or a replay of an utterance already sent
                await manual.ack(event)
                continue
            state = pending.setdefault(key, Pending(partition=event.message.partition))
            state.events.append(event)
            if isinstance(record, TextScore):
                state.text = record
            elif record.window_seq is None:
                state.whole, state.whole_at = record, time.monotonic()
            else:
                state.windows.append(record.sentiment.model_dump())
            if state.whole is not None and state.text is not None:
                await finish(key, state)

    def forget_revoked(_app: faust.App, revoked: set[TP], **_kwargs: object) -> None:
        # The next owner replays these unacked scores and sends the result; acking them here would lose it.
        gone = {tp.partition for tp in revoked if tp.topic in (ACOUSTIC_SCORES.name, TEXT_SCORES.name)}
        for key in [key for key, state in pending.items() if state.partition in gone]:
            del pending[key]

    ctx.app.on_partitions_revoked.connect(forget_revoked, weak=False)

    @ctx.app.timer(interval=0.25)
    async def degrade_late() -> None:
        now = time.monotonic()
        for key, state in list(pending.items()):
            if state.whole is not None and not state.degraded_sent and now - state.whole_at > DEGRADE_AFTER_S:
                state.degraded_sent = True
                await ctx.emit(EVENTS, result(key, state, final=False), key[0])
            elif now - state.created > GIVE_UP_AFTER_S:
                log.warning("utterance %s: %s never came", key, "text" if state.text is None else "acoustic score")
                if state.whole is not None or state.text is not None:
                    await finish(key, state)
                else:  # stray windows only
                    pending.pop(key, None)
                    for event in state.events:
                        await stream_ref[0].ack(event)

    return {}
