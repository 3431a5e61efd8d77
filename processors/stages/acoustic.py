"""Acoustic stage: provisional scores for windows during speech (to the client at once), and a score for each
whole utterance (for fusion). Inference runs in a one-thread pool off the event loop."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faust

from moodstream.processors.acoustic import AcousticClassifier
from moodstream.processors.runtime.context import ModelVersions, StageContext
from moodstream.schemas.records import AcousticScore, AcousticWindow, SentimentScores, Utterance
from moodstream.schemas.topics import ACOUSTIC_SCORES, ACOUSTIC_WINDOWS, EVENTS, UTTERANCES


def register(ctx: StageContext) -> ModelVersions:
    loading = ctx.preload(AcousticClassifier)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acoustic")

    def score(record: AcousticWindow | Utterance) -> AcousticScore:
        classifier = loading.get()
        result = classifier.classify(record.pcm)
        whole = isinstance(record, Utterance)
        return AcousticScore(
            session_id=record.session_id,
            utterance_seq=record.utterance_seq,
            window_seq=None if whole else record.window_seq,
            start_ms=record.start_ms,
            end_ms=record.end_ms,
            sentiment=SentimentScores(**result.sentiment),
            emotions=result.emotions,
            model_version=classifier.version,
            compute_ms=result.compute_ms,
            received_at_ms=record.last_frame_received_at_ms if whole else record.received_at_ms,
            arousal=round(result.arousal, 4) if result.arousal is not None else None,
        )

    async def provisional(result: AcousticScore) -> None:
        await ctx.emit(ACOUSTIC_SCORES, result, result.session_id)
        await ctx.emit(EVENTS, result, result.session_id)  # to the client at once

    async def whole(result: AcousticScore) -> None:
        await ctx.emit(ACOUSTIC_SCORES, result, result.session_id)

    @ctx.app.agent(ctx.topic(ACOUSTIC_WINDOWS), name="acoustic-windows")
    async def acoustic_windows(stream: faust.StreamT) -> None:
        await ctx.consume(stream, AcousticWindow, "acoustic-windows", score, pool, provisional)  # type: ignore[arg-type]

    @ctx.app.agent(ctx.topic(UTTERANCES), name="acoustic-utterances")
    async def acoustic_utterances(stream: faust.StreamT) -> None:
        await ctx.consume(stream, Utterance, "acoustic-utterances", score, pool, whole)  # type: ignore[arg-type]

    return {"acoustic": lambda: loading.get().version}
