"""Acoustic stage: provisional scores for windows during speech (to the client at once), and a score for each
whole utterance (for fusion). Inference runs in a one-thread pool off the event loop."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import faust

from processors.acoustic import AcousticClassifier
from processors.worker import StageContext
from schemas import SchemaError, decode
from schemas.records import AcousticScore, AcousticWindow, SentimentScores, Utterance
from schemas.topics import ACOUSTIC_SCORES, ACOUSTIC_WINDOWS, EVENTS, UTTERANCES

log = logging.getLogger("moodstream.acoustic")


def register(ctx: StageContext) -> dict[str, str]:
    classifier = AcousticClassifier()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acoustic")

    def score(record: AcousticWindow | Utterance) -> AcousticScore:
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
        )

    async def handle(stream: faust.StreamT, expected: type, name: str, to_client: bool) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            try:
                record = decode(event.value, (expected,))
            except SchemaError as exc:
                await ctx.dead_letter(event, name, exc)
                continue
            try:
                result = await loop.run_in_executor(pool, score, record)
                await ctx.emit(ACOUSTIC_SCORES, result, record.session_id)
                if to_client:
                    await ctx.emit(EVENTS, result, record.session_id)
            except Exception as exc:  # one bad record must not stop the partition
                log.exception("%s failed on session %s", name, record.session_id)
                await ctx.dead_letter(event, name, exc)

    @ctx.app.agent(ctx.topic(ACOUSTIC_WINDOWS), name="acoustic-windows")
    async def acoustic_windows(stream: faust.StreamT) -> None:
        await handle(stream, AcousticWindow, "acoustic-windows", to_client=True)

    @ctx.app.agent(ctx.topic(UTTERANCES), name="acoustic-utterances")
    async def acoustic_utterances(stream: faust.StreamT) -> None:
        await handle(stream, Utterance, "acoustic-utterances", to_client=False)

    return {"acoustic": classifier.version}
