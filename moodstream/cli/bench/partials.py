"""`moodstream bench partials --data DIR`: partial transcripts on long speech, as the serving cores make them.

Each file is cut by the endpointer at 100 ms frames, as a worker hears it; every open utterance's chunks go through
the ASR stage's `PartialTracker` and `Transcriber.transcribe_partial` (no capacity gate: every due partial is
decoded), its final through `Transcriber.transcribe`. Reported per utterance: how many partials, how much speech the
first one had heard, how far the last partial is from the final (WER), how often a partial rewrote words the one
before had shown (flicker), and the decode cost of partials against the final's.

DIR holds audio files and either `transcripts.tsv` (header, then `file<TAB>text`) or `labels.tsv` (header, first
column `file`); any rate, any format PyAV reads.
"""

from __future__ import annotations

import csv
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moodstream.cli.bench import report, unusable
from moodstream.cli.bench.wer import normalize, wer
from moodstream.processors.endpointer import Endpointer, SpeechSoFar, UtteranceCut
from moodstream.processors.partials import PartialOptions, PartialTracker
from moodstream.processors.transcriber import Transcriber, TranscriberOptions
from moodstream.processors.vad import SileroStream, load_silero
from moodstream.producers.audio import load_pcm16
from moodstream.schemas.audio import samples_to_ms
from moodstream.schemas.records import PartialAudio
from moodstream.settings import AsrEngine

FRAME_BYTES = 3200  # 100 ms: what the gateway joins client frames into


@dataclass
class UtteranceTrace:
    speech_ms: float
    partials: list[str] = field(default_factory=list)
    first_heard_ms: float | None = None
    """Speech the first partial had heard (its end − the speech start)."""
    partial_ms: float = 0.0
    final: str = ""
    final_ms: float = 0.0


def list_files(data: Path) -> list[Path]:
    for name in ("transcripts.tsv", "labels.tsv"):
        if (data / name).is_file():
            with (data / name).open(newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
            return [data / row[0] for row in rows if row]
    unusable("partials", f"{data} holds neither transcripts.tsv nor labels.tsv")


def trace_file(
    path: Path, transcriber: Transcriber, vad_model: object, options: PartialOptions
) -> list[UtteranceTrace]:
    """The partials and finals of one file's utterances."""
    pcm = load_pcm16(path)
    endpointer = Endpointer(SileroStream(vad_model))
    tracker = PartialTracker(options)
    open_traces: dict[int, UtteranceTrace] = {}
    done: list[UtteranceTrace] = []
    for offset in range(0, len(pcm), FRAME_BYTES):
        events = endpointer.feed(pcm[offset : offset + FRAME_BYTES], offset // 2)
        if offset + FRAME_BYTES >= len(pcm):
            events += endpointer.flush()
        for event in events:
            if isinstance(event, SpeechSoFar):
                trace = open_traces.setdefault(event.utterance_seq, UtteranceTrace(0.0))
                partial_of(event, tracker, transcriber, trace)
            elif isinstance(event, UtteranceCut):
                trace = open_traces.pop(event.utterance_seq, UtteranceTrace(0.0))
                tracker.finished("bench", event.utterance_seq)
                trace.speech_ms = samples_to_ms(event.end_sample - event.start_sample)
                result = transcriber.transcribe(event.pcm)
                trace.final, trace.final_ms = result.text, result.compute_ms
                done.append(trace)
    return done


def partial_of(event: SpeechSoFar, tracker: PartialTracker, transcriber: Transcriber, trace: UtteranceTrace) -> None:
    chunk = PartialAudio(
        session_id="bench",
        utterance_seq=event.utterance_seq,
        chunk_seq=event.chunk_seq,
        start_ms=samples_to_ms(event.start_sample),
        end_ms=samples_to_ms(event.start_sample + len(event.pcm) // 2),
        speech_start_ms=samples_to_ms(event.speech_start_sample),
        received_at_ms=0.0,
        pcm=event.pcm,
    )
    decode = tracker.on_chunk(chunk, now_ms=0.0)
    if decode is None:
        return
    result = transcriber.transcribe_partial(decode.pcm, decode.settled)
    trace.partial_ms += result.compute_ms
    partial = tracker.on_decoded(decode, result.text, transcriber.model_id, result.compute_ms)
    if partial is not None:
        trace.partials.append(partial.text)
        if trace.first_heard_ms is None:
            trace.first_heard_ms = partial.end_ms - chunk.speech_start_ms


def rewrites(texts: list[str]) -> int:
    """Partials that changed a word the previous partial had already shown (its last word excepted)."""
    count = 0
    for before, after in itertools.pairwise(texts):
        shown, now = normalize(before)[:-1], normalize(after)
        count += now[: len(shown)] != shown
    return count


def mean(values: list[float], digits: int = 1) -> float | None:
    return round(float(np.mean(values)), digits) if values else None


def summarise(traces: list[UtteranceTrace], min_speech_ms: float) -> dict:
    long = [t for t in traces if t.speech_ms >= min_speech_ms]
    with_partials = [t for t in long if t.partials]
    heard = [t.first_heard_ms for t in with_partials if t.first_heard_ms is not None]
    changes = sum(len(t.partials) - 1 for t in with_partials)
    last_wer = [wer([t.final], [t.partials[-1]]) for t in with_partials if t.final]
    return {
        "utterances": len(traces),
        f"utterances_over_{min_speech_ms / 1000:g}s": len(long),
        "partials_per_utterance": mean([len(t.partials) for t in long], 2),
        "with_3_or_more_partials": mean([float(len(t.partials) >= 3) for t in long], 3),
        "first_partial_heard_ms_p50": round(float(np.median(heard)), 1) if heard else None,
        "first_partial_heard_ms_max": round(float(np.max(heard)), 1) if heard else None,
        "last_partial_wer_vs_final_mean": mean(last_wer, 4),
        "rewrite_share": round(sum(rewrites(t.partials) for t in with_partials) / changes, 3) if changes else None,
        "partial_decode_ms_per_utterance_mean": mean([t.partial_ms for t in long]),
        "final_decode_ms_mean": mean([t.final_ms for t in long]),
    }


def run(data: Path, limit: int, min_speech_s: float, from_start: bool = False, engine: AsrEngine = "auto") -> dict:
    files = list_files(data)[: limit or None]
    if not files:
        unusable("partials", f"no audio files listed in {data}")
    transcriber = Transcriber(TranscriberOptions(cpu_threads=1, engine=engine))
    vad_model = load_silero()
    options = PartialOptions(unsettled_words=None) if from_start else PartialOptions()
    traces = []
    for index, path in enumerate(files):
        print(f"{index + 1}/{len(files)} {path.name}", file=sys.stderr, flush=True)
        traces += trace_file(path, transcriber, vad_model, options)
    return {"benchmark": "partials", "files": len(files), "model": transcriber.model_id, "engine": transcriber.engine,
            "unsettled_words": options.unsettled_words, **summarise(traces, min_speech_s * 1000)}  # fmt: skip


def main(
    data: Path, limit: int, min_speech_s: float, from_start: bool, as_json: bool, engine: AsrEngine = "auto"
) -> None:
    if not data.is_dir():
        unusable("partials", f"{data} is not a folder")
    report(run(data, limit, min_speech_s, from_start, engine), as_json)
