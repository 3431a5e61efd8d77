"""Text stage: transcripts in, text sentiment scores out; partial transcripts in, `partial` events out (to the
client at once). Inference runs in a one-thread pool off the event loop.

A model trained on dialogue context reads each utterance after the session's previous one (`dialogue.DialogueMemory`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import faust

from processors.dialogue import DialogueMemory
from processors.runtime import ModelVersions, StageContext
from processors.text_sentiment import NO_TEXT, TextClassifier, TextSentiment
from schemas.records import PartialResult, PartialTranscript, Record, SentimentScores, TextScore, Transcript
from schemas.topics import EVENTS, TEXT_SCORES, TRANSCRIPTS


def scores_of(result: TextSentiment) -> SentimentScores:
    return SentimentScores(negative=result.negative, neutral=result.neutral, positive=result.positive)


def register(ctx: StageContext) -> ModelVersions:
    loading = ctx.preload(TextClassifier)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text-sentiment")
    memory = DialogueMemory()  # touched only from the one pool thread

    def read(session_id: str, utterance_seq: int, text: str) -> TextSentiment:
        """`text` read after the session's previous utterance, when the model was trained with such context."""
        classifier = loading.get()
        context = [memory.context(session_id, utterance_seq)] if classifier.uses_context else None
        return classifier.classify([text], context)[0]

    def score(transcript: Transcript) -> TextScore:
        started = time.perf_counter()
        usable = not transcript.rejected and transcript.text.strip()
        sid, seq = transcript.session_id, transcript.utterance_seq
        result = read(sid, seq, transcript.text) if usable else NO_TEXT
        if usable:
            memory.remember(sid, seq, transcript.text)
        return TextScore(
            session_id=transcript.session_id,
            utterance_seq=transcript.utterance_seq,
            text=transcript.text if usable else "",
            has_text=result.has_text,
            sentiment=scores_of(result),
            label=result.label if result.has_text else "neutral",  # type: ignore[arg-type]
            model_version=loading.get().version,
            compute_ms=round((time.perf_counter() - started) * 1000, 3),
            asr_avg_logprob=transcript.avg_logprob,
            asr_compute_ms=transcript.compute_ms,
            asr_model=transcript.model_id,
            start_ms=transcript.start_ms,
            end_ms=transcript.end_ms,
            last_frame_received_at_ms=transcript.last_frame_received_at_ms,
            fusion_alpha=transcript.fusion_alpha,
            voice_sentiment=transcript.voice_sentiment,
        )

    def score_partial(partial: PartialTranscript) -> PartialResult:
        """The words so far; never remembered as context."""
        result = read(partial.session_id, partial.utterance_seq, partial.text)
        return PartialResult(
            session_id=partial.session_id,
            utterance_seq=partial.utterance_seq,
            revision=partial.revision,
            start_ms=partial.start_ms,
            end_ms=partial.end_ms,
            text=partial.text,
            text_sentiment=scores_of(result),
        )

    def compute(record: Transcript | PartialTranscript) -> Record:
        return score(record) if isinstance(record, Transcript) else score_partial(record)

    async def send(record: Record) -> None:
        topic = EVENTS if isinstance(record, PartialResult) else TEXT_SCORES
        await ctx.emit(topic, record, record.session_id)  # type: ignore[attr-defined]

    @ctx.app.agent(ctx.topic(TRANSCRIPTS), name="text-sentiment")
    async def text_sentiment(stream: faust.StreamT) -> None:
        expected = (Transcript, PartialTranscript)
        await ctx.consume(stream, expected, "text-sentiment", compute, pool, send)  # type: ignore[arg-type]

    return {"text": lambda: loading.get().version}
