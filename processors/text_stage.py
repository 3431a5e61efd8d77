"""Text stage: transcripts in, text sentiment scores out. Inference runs in a one-thread pool off the event loop.

A model trained on dialogue context reads each utterance after the session's previous one (`dialogue.DialogueMemory`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import faust

from processors.dialogue import DialogueMemory
from processors.runtime import ModelVersions, StageContext
from processors.text_sentiment import NO_TEXT, TextClassifier
from schemas.records import SentimentScores, TextScore, Transcript
from schemas.topics import TEXT_SCORES, TRANSCRIPTS


def register(ctx: StageContext) -> ModelVersions:
    loading = ctx.preload(TextClassifier)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text-sentiment")
    memory = DialogueMemory()  # touched only from the one pool thread

    def score(transcript: Transcript) -> TextScore:
        classifier = loading.get()
        started = time.perf_counter()
        usable = not transcript.rejected and transcript.text.strip()
        sid, seq = transcript.session_id, transcript.utterance_seq
        context = [memory.context(sid, seq)] if classifier.uses_context else None
        result = classifier.classify([transcript.text], context)[0] if usable else NO_TEXT
        if usable:
            memory.remember(sid, seq, transcript.text)
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
            fusion_alpha=transcript.fusion_alpha,
        )

    async def send(record: TextScore) -> None:
        await ctx.emit(TEXT_SCORES, record, record.session_id)

    @ctx.app.agent(ctx.topic(TRANSCRIPTS), name="text-sentiment")
    async def text_sentiment(stream: faust.StreamT) -> None:
        await ctx.consume(stream, Transcript, "text-sentiment", score, pool, send)  # type: ignore[arg-type]

    return {"text": lambda: loading.get().version}
