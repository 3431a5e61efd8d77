"""Text stage: transcripts in, text sentiment scores out. Inference runs in a one-thread pool off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import faust

from processors.text_sentiment import NO_TEXT, TextClassifier
from processors.worker import StageContext
from schemas import SchemaError, decode
from schemas.records import SentimentScores, TextScore, Transcript
from schemas.topics import TEXT_SCORES, TRANSCRIPTS

log = logging.getLogger("moodstream.text")


def register(ctx: StageContext) -> dict[str, str]:
    classifier = TextClassifier()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text-sentiment")

    def score(transcript: Transcript) -> TextScore:
        started = time.perf_counter()
        usable = not transcript.rejected and transcript.text.strip()
        result = classifier.classify([transcript.text])[0] if usable else NO_TEXT
        return TextScore(
            session_id=transcript.session_id,
            utterance_seq=transcript.utterance_seq,
            text=transcript.text if usable else "",
            has_text=result.has_text,
            sentiment=SentimentScores(negative=result.negative, neutral=result.neutral, positive=result.positive),
            label=result.label if result.has_text else "neutral",  # type: ignore[arg-type]
            model_version=classifier.version,
            compute_ms=round((time.perf_counter() - started) * 1000, 3),
            asr_avg_logprob=transcript.avg_logprob,
            asr_compute_ms=transcript.compute_ms,
            asr_model=transcript.model_id,
            start_ms=transcript.start_ms,
            end_ms=transcript.end_ms,
            last_frame_received_at_ms=transcript.last_frame_received_at_ms,
        )

    @ctx.app.agent(ctx.topic(TRANSCRIPTS), name="text-sentiment")
    async def text_sentiment(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            try:
                transcript = decode(event.value, (Transcript,))
            except SchemaError as exc:
                await ctx.dead_letter(event, "text-sentiment", exc)
                continue
            try:
                record = await loop.run_in_executor(pool, score, transcript)
                await ctx.emit(TEXT_SCORES, record, transcript.session_id)
            except Exception as exc:  # one bad record must not stop the partition
                log.exception("text stage failed on session %s", transcript.session_id)
                await ctx.dead_letter(event, "text-sentiment", exc)

    return {"text": classifier.version}
