"""ASR stage: utterances in, transcripts out. Whisper runs in a one-thread pool off the event loop.

One pool thread per worker process keeps threads × workers ≤ cores; utterances queue there in arrival order, so
one long utterance delays the others on this worker by its own decode time (~0.2-0.4 s), never by more.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faust

from processors.runtime import ModelVersions, StageContext
from processors.transcriber import Transcriber, TranscriberOptions
from schemas.records import Transcript, Utterance
from schemas.topics import TRANSCRIPTS, UTTERANCES


def register(ctx: StageContext) -> ModelVersions:
    path = ctx.settings.asr_model_path
    loading = ctx.preload(lambda: Transcriber(TranscriberOptions(model_path=Path(path) if path else None)))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")

    def transcribe(utterance: Utterance) -> Transcript:
        transcriber = loading.get()
        common = {
            "session_id": utterance.session_id,
            "utterance_seq": utterance.utterance_seq,
            "start_ms": utterance.start_ms,
            "end_ms": utterance.end_ms,
            "model_id": transcriber.model_id,
            "last_frame_received_at_ms": utterance.last_frame_received_at_ms,
            "fusion_alpha": utterance.fusion_alpha,
        }
        if utterance.gated:  # the anti-hallucination gate: never decoded
            return Transcript(text="", rejected=True, reject_reason=f"gate:{utterance.gated}", compute_ms=0, **common)
        result = transcriber.transcribe(utterance.pcm)
        return Transcript(
            text=result.text,
            rejected=result.rejected,
            reject_reason=result.reject_reason,
            avg_logprob=result.avg_logprob,
            no_speech_prob=result.no_speech_prob,
            compute_ms=result.compute_ms,
            **common,
        )

    async def send(transcript: Transcript) -> None:
        await ctx.emit(TRANSCRIPTS, transcript, transcript.session_id)

    @ctx.app.agent(ctx.topic(UTTERANCES), name="asr")
    async def asr(stream: faust.StreamT) -> None:
        await ctx.consume(stream, Utterance, "asr", transcribe, pool, send)  # type: ignore[arg-type]

    return {"asr": lambda: loading.get().model_id}
