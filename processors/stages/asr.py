"""ASR stage: utterances in, transcripts and their text scores out; open utterances' audio in, partial transcripts
and `partial` events out. The speech-to-text core (`processors.asr_backend`: Whisper by default) and the text model
(`text_reader.TextReader`, ~3 ms a sentence) run one after the other in a one-thread pool off the event loop: the
words are read where they are made, so a result waits for no topic hop between the two (transcripts still go to
their topic, for analytics). Utterances and open utterances' audio come handed off by this worker's audio stage
(`runtime.handoff`) or from their topics; text scores go on to this worker's fusion the same way.

One pool thread per worker process keeps threads × workers ≤ cores; utterances queue there in arrival order, so
one long utterance delays the others on this worker by its own decode time (~0.2-0.4 s), never by more. A final that
starts while others wait behind it decodes greedily (`FinalsQueue`, `MOODSTREAM_ASR_CATCH_UP`): a busy worker drains
its backlog instead of adding a beam search's time to every final behind it. Partials
(`partials.PartialTracker`) are decoded only while no final waits for the pool and the machine has CPU to spare
(`MOODSTREAM_PARTIAL_MAX_CPU_PERCENT`): a busy machine's finals need every core, so under load partials thin out and
stop, and a final waits at most for the one partial decode already running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import faust
import psutil

from moodstream.clock import now_ms
from moodstream.processors.asr_backend import SpeechToText, load_asr
from moodstream.processors.partials import PartialTracker
from moodstream.processors.runtime.context import ModelVersions, StageContext
from moodstream.processors.text_reader import TextReader
from moodstream.processors.text_sentiment import TextClassifier
from moodstream.schemas.records import (
    EmotionScores,
    PartialAudio,
    PartialResult,
    SentimentScores,
    TextScore,
    Transcript,
    Utterance,
)
from moodstream.schemas.topics import EVENTS, PARTIAL_AUDIO, TEXT_SCORES, TRANSCRIPTS, UTTERANCES

T = TypeVar("T")


def transcript_of(transcriber: SpeechToText, utterance: Utterance, hurry: bool = False) -> Transcript:
    common = {
        "session_id": utterance.session_id,
        "utterance_seq": utterance.utterance_seq,
        "start_ms": utterance.start_ms,
        "end_ms": utterance.end_ms,
        "model_id": transcriber.model_id,
        "last_frame_received_at_ms": utterance.last_frame_received_at_ms,
        "fusion_alpha": utterance.fusion_alpha,
        "channel": utterance.channel,
        "role": utterance.role,
    }
    if utterance.gated:  # the anti-hallucination gate: never decoded
        return Transcript(text="", rejected=True, reject_reason=f"gate:{utterance.gated}", compute_ms=0, **common)
    result = transcriber.transcribe(utterance.pcm, hurry=hurry)
    voice = result.voice
    return Transcript(
        text=result.text,
        rejected=result.rejected,
        reject_reason=result.reject_reason,
        avg_logprob=result.avg_logprob,
        no_speech_prob=result.no_speech_prob,
        compute_ms=result.compute_ms,
        voice_sentiment=SentimentScores(**voice.polarity) if voice else None,
        voice_emotion=EmotionScores(**voice.emotion) if voice else None,
        voice_arousal=round(voice.arousal, 4) if voice else None,
        voice_model=voice.head if voice else None,
        **common,
    )


class CpuGauge:
    """The machine's CPU use (all cores, percent), re-read at most once a second."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._read_at = 0.0
        self._percent = 0.0
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def percent(self) -> float:
        now = time.monotonic()
        if now - self._read_at >= self.every_s:
            self._percent, self._read_at = psutil.cpu_percent(interval=None), now
        return self._percent


class FinalsQueue:
    """The finals handed to the ASR pool and not yet started: added on the event loop, taken on the pool thread. A
    final that starts with others behind it is decoded in a hurry (`SpeechToText.transcribe`) when `catch_up` is
    on: the pool then drains a backlog instead of letting every later final wait a full decode longer."""

    def __init__(self, catch_up: bool) -> None:
        self.catch_up = catch_up
        self._lock = threading.Lock()
        self._waiting = 0
        self.started = 0
        """Finals started since the worker started."""
        self.hurried = 0
        """Of those, the ones started in a hurry."""

    def add(self) -> None:
        with self._lock:
            self._waiting += 1

    def take(self, decodes: bool = True) -> bool:
        """A final starts; returns whether to hurry it. One the gate rejected (`decodes` false) leaves the queue
        uncounted: it is never transcribed."""
        with self._lock:
            self._waiting -= 1
            hurry = decodes and self.catch_up and self._waiting > 0
            self.started += decodes
            self.hurried += hurry
            return hurry

    def counts(self) -> dict[str, int]:
        """The worker heartbeat's counters."""
        return {"finals": self.started, "finals_hurried": self.hurried}


class AsrShell:
    """The worker's ASR: finals first, partials in the gaps. Every method runs on the event loop."""

    def __init__(self, ctx: StageContext) -> None:
        backend, path, engine = ctx.settings.asr_backend, ctx.settings.asr_model_path, ctx.settings.asr_engine
        self.ctx = ctx
        self.loading = ctx.preload(lambda: load_asr(backend, Path(path) if path else None, engine=engine))
        self.text_model = ctx.preload(TextClassifier)
        self.text = TextReader(self.text_model.get)  # touched only from the one pool thread
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")
        self.partials = PartialTracker()
        self.cpu = CpuGauge()
        self.finals_waiting = 0
        """Finals handed to the pool and not yet done: while any waits, no partial is decoded."""
        self.finals_queued = FinalsQueue(ctx.settings.asr_catch_up)
        ctx.counts.append(self.finals_queued.counts)

    async def on_utterance(self, utterance: Utterance, partition: int) -> None:
        self.partials.finished(utterance.session_id, utterance.utterance_seq, utterance.channel)
        self.finals_waiting += 1
        self.finals_queued.add()
        try:
            transcript, score = await self._run(self._final, utterance)
        finally:
            self.finals_waiting -= 1
        await self.ctx.send(TEXT_SCORES, score, score.session_id, partition)  # fusion waits for this one
        await self.ctx.emit(TRANSCRIPTS, transcript, transcript.session_id)

    def _final(self, utterance: Utterance) -> tuple[Transcript, TextScore]:
        hurry = self.finals_queued.take(decodes=not utterance.gated)  # the pool thread: this final starts now
        transcript = transcript_of(self.loading.get(), utterance, hurry)
        return transcript, self.text.score(transcript)

    async def on_chunk(self, chunk: PartialAudio, _partition: int) -> None:
        decode = self.partials.on_chunk(chunk, now_ms())
        if decode is None or self.finals_waiting or not self.loading.future.done():
            return
        if self.cpu.percent() > self.ctx.settings.partial_max_cpu_percent:
            return  # the chunk is kept: once the machine has room again, the next one decodes the audio so far
        transcriber = self.loading.get()
        result = await self._run(transcriber.transcribe_partial, decode.pcm, decode.settled)
        # back on the loop: the final may have arrived meanwhile, and then the tracker drops this partial
        partial = self.partials.on_decoded(decode, result.text, transcriber.model_id, result.compute_ms)
        if partial is not None:
            event: PartialResult = await self._run(self.text.score_partial, partial)
            await self.ctx.emit(EVENTS, event, event.session_id)  # to the client at once
            await self.ctx.emit(TRANSCRIPTS, partial, partial.session_id)

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)


def register(ctx: StageContext) -> ModelVersions:
    shell = AsrShell(ctx)

    finals = ctx.route(UTTERANCES, "asr", shell.on_utterance)
    partials = ctx.route(PARTIAL_AUDIO, "asr-partials", shell.on_chunk)

    @ctx.app.agent(ctx.topic(UTTERANCES), name="asr")
    async def asr(stream: faust.StreamT) -> None:
        await ctx.each_record(stream, (Utterance,), "asr", finals)

    @ctx.app.agent(ctx.topic(PARTIAL_AUDIO), name="asr-partials")
    async def asr_partials(stream: faust.StreamT) -> None:
        await ctx.each_record(stream, (PartialAudio,), "asr-partials", partials)

    return {"asr": lambda: shell.loading.get().model_id, "text": lambda: shell.text_model.get().version}
