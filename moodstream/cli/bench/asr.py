"""`moodstream bench asr --data DIR`: the production ASR path against faster-whisper's default `transcribe()`.

DIR holds audio files (wav, flac, g722, … any rate; resampled on load) and either `transcripts.tsv` (header, then
`file<TAB>text`) or a `labels.tsv` with `file` and `transcript` columns (as `calm_speech` has; rows without a
transcript are left out). Both paths run in the same process on the same files with one CPU thread each.
"""

from __future__ import annotations

import csv
import random
import time
import wave
from pathlib import Path

import numpy as np

from moodstream.cli.bench import report, unusable
from moodstream.cli.bench.speech import asterisk_prompts
from moodstream.cli.bench.wer import wer
from moodstream.models.acoustic.corpus import read_audio
from moodstream.processors.asr_backend import load_asr
from moodstream.processors.transcriber import Transcriber
from moodstream.producers.audio import load_pcm16
from moodstream.schemas.audio import SAMPLE_RATE
from moodstream.settings import AsrBackend, AsrEngine


def make_asterisk_folder(out: Path, count: int = 120, seed: int = 1) -> Path:
    """Write `count` asterisk prompts (seeded sample) as 16 kHz wav files plus transcripts.tsv."""
    out.mkdir(parents=True, exist_ok=True)
    prompts = asterisk_prompts("asr")
    random.Random(seed).shuffle(prompts)
    rows = []
    for prompt in prompts[:count]:
        name = prompt.path.stem + ".wav"
        with wave.open(str(out / name), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(SAMPLE_RATE)
            handle.writeframes(load_pcm16(prompt.path))
        rows.append((name, " ".join(prompt.text.split())))
    with (out / "transcripts.tsv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(("file", "text"))
        writer.writerows(rows)
    return out


def read_folder(data: Path) -> list[tuple[Path, str]]:
    """(audio file, transcript) pairs of `transcripts.tsv`, else of `labels.tsv`'s rows that have a transcript."""
    if (data / "transcripts.tsv").is_file():
        with (data / "transcripts.tsv").open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            return [(data / row[0], row[1]) for row in reader if row]
    if (data / "labels.tsv").is_file():
        with (data / "labels.tsv").open(newline="", encoding="utf-8") as handle:
            rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            return [(data / row["file"], row["transcript"]) for row in rows if (row.get("transcript") or "").strip()]
    unusable("asr", f"{data} holds neither transcripts.tsv nor labels.tsv")


def run(
    data: Path,
    limit: int = 0,
    backend: AsrBackend = "whisper",
    min_seconds: float = 0.0,
    hurried: bool = False,
    engine: AsrEngine = "auto",
) -> dict:
    """WER and time per file of `backend` against faster-whisper's default; `hurried`: every final decoded as a busy
    worker decodes one with others waiting behind it; `engine`: where Whisper runs."""
    pairs = [(read_audio(path), text) for path, text in read_folder(data)]
    pairs = [(audio, text) for audio, text in pairs if len(audio) >= min_seconds * SAMPLE_RATE][: limit or None]
    if not pairs:
        unusable("asr", f"no file in {data} has a transcript and {min_seconds:g} s of audio")
    audios = [audio for audio, _ in pairs]
    references = [text for _, text in pairs]
    transcriber = load_asr(backend, threads=1, engine=engine)
    transcriber.transcribe(audios[0])  # warm-up
    ours, our_ms, paths = [], [], {}
    rejected = 0
    for audio in audios:
        result = transcriber.transcribe(audio, hurry=hurried)
        ours.append(result.raw_text)  # WER of what the decoder produced; the guard is measured separately
        rejected += result.rejected
        our_ms.append(result.compute_ms)
        paths[result.path] = paths.get(result.path, 0) + 1
    # the reference: faster-whisper's default transcribe() with Whisper tiny.en, whichever backend is measured
    default_model = (transcriber if isinstance(transcriber, Transcriber) else load_asr("whisper", threads=1))._whisper
    theirs, their_ms = [], []
    for audio in audios:
        started = time.perf_counter()
        segments, _info = default_model.transcribe(audio, language="en")
        theirs.append(" ".join(s.text.strip() for s in segments))
        their_ms.append((time.perf_counter() - started) * 1000)
    result = {
        "benchmark": "asr",
        "files": len(pairs),
        "audio_s_mean": round(float(np.mean([len(a) for a in audios])) / SAMPLE_RATE, 2),
        "model": transcriber.model_id,
        "wer": round(wer(references, ours), 4),
        "default_wer": round(wer(references, theirs), 4),
        "ms_mean": round(float(np.mean(our_ms)), 1),
        "ms_p95": round(float(np.percentile(our_ms, 95)), 1),
        "default_ms_mean": round(float(np.mean(their_ms)), 1),
        "default_ms_p95": round(float(np.percentile(their_ms, 95)), 1),
        "paths": paths,
        "rejected_by_guard": rejected,
        "threads": 1,
        "hurried": hurried,
        "engine": getattr(transcriber, "engine", engine),  # what `auto` chose on this CPU
    }
    result["cost_ratio"] = round(result["ms_mean"] / result["default_ms_mean"], 4)
    seconds = [len(a) / SAMPLE_RATE for a in audios]
    result["by_length"] = by_length(seconds, references, ours, theirs, our_ms, their_ms)
    return result


LENGTH_BUCKETS = ((0.0, 2.0, "<2s"), (2.0, 5.0, "2-5s"), (5.0, 10.0, "5-10s"), (10.0, float("inf"), ">10s"))


def by_length(
    seconds: list[float],
    references: list[str],
    ours: list[str],
    theirs: list[str],
    our_ms: list[float],
    their_ms: list[float],
) -> dict[str, dict]:
    """WER and cost of both paths per utterance-length bucket (only the buckets that hold files)."""
    buckets: dict[str, dict] = {}
    for low, high, name in LENGTH_BUCKETS:
        picked = [i for i, s in enumerate(seconds) if low <= s < high]
        if not picked:
            continue
        ms, default_ms = float(np.mean([our_ms[i] for i in picked])), float(np.mean([their_ms[i] for i in picked]))
        buckets[name] = {
            "files": len(picked),
            "wer": round(wer([references[i] for i in picked], [ours[i] for i in picked]), 4),
            "default_wer": round(wer([references[i] for i in picked], [theirs[i] for i in picked]), 4),
            "ms_mean": round(ms, 1),
            "default_ms_mean": round(default_ms, 1),
            "cost_ratio": round(ms / default_ms, 4),
        }
    return buckets


def main(
    data: Path,
    limit: int,
    as_json: bool,
    backend: AsrBackend = "whisper",
    min_seconds: float = 0.0,
    hurried: bool = False,
    engine: AsrEngine = "auto",
) -> None:
    result = run(data, limit, backend, min_seconds, hurried, engine)
    report(result, as_json)
