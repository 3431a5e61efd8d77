"""Acoustic stage: provisional scores for windows during speech (to the client at once), and a score for each
whole utterance (for fusion). Inference runs in a one-thread pool off the event loop; windows and utterances come
handed off by this worker's audio stage or from their topics, and scores go on to this worker's fusion the same way."""

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
            channel=record.channel,
            role=record.role,
        )

    async def provisional(result: AcousticScore, partition: int) -> None:
        await ctx.send(ACOUSTIC_SCORES, result, result.session_id, partition)
        await ctx.emit(EVENTS, result, result.session_id)  # to the client at once

    async def whole(result: AcousticScore, partition: int) -> None:
        await ctx.send(ACOUSTIC_SCORES, result, result.session_id, partition)

    windows = ctx.stateless(ACOUSTIC_WINDOWS, "acoustic-windows", score, pool, provisional)
    utterances = ctx.stateless(UTTERANCES, "acoustic-utterances", score, pool, whole)

    @ctx.app.agent(ctx.topic(ACOUSTIC_WINDOWS), name="acoustic-windows")
    async def acoustic_windows(stream: faust.StreamT) -> None:
        await ctx.each_record(stream, (AcousticWindow,), "acoustic-windows", windows)

    @ctx.app.agent(ctx.topic(UTTERANCES), name="acoustic-utterances")
    async def acoustic_utterances(stream: faust.StreamT) -> None:
        await ctx.each_record(stream, (Utterance,), "acoustic-utterances", utterances)

    return {"acoustic": lambda: loading.get().version}
