"""`moodstream bench acoustic --data DIR`: 3-class UAR, accuracy and confusion on RAVDESS-named files, and ms per
500 ms window on one thread. Only the actors the shipped model held out are scored unless --actors says otherwise."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from moodstream.cli.bench import report, unusable
from moodstream.models import ACOUSTIC_MODEL_DIR
from moodstream.models.acoustic.corpus import SENTIMENT_OF, ravdess_name, read_audio, trim
from moodstream.models.metrics import three_way_report
from moodstream.processors.acoustic import AcousticClassifier, AcousticOptions


def held_out_actors() -> list[int]:
    return json.loads((ACOUSTIC_MODEL_DIR / "metrics.json").read_text())["held_out_actors"]


def ravdess_files(root: Path, actors: list[int] | None) -> list[tuple[Path, str, int]]:
    """(path, emotion, actor) of every RAVDESS-named file under `root` (any depth) of the chosen actors (None: all);
    exits 2 when there is none."""
    files = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".flac", ".wav")):
        named = ravdess_name(path)
        if named and (actors is None or named[1] in actors):
            files.append((path, *named))
    if not files:
        chosen = "any actor" if actors is None else f"actors {','.join(map(str, actors))}"
        unusable("acoustic", f"no RAVDESS-named .wav/.flac files (03-01-EE-II-SS-RR-NN) of {chosen} under {root}")
    return files


def run(data: Path, actors: list[int] | None) -> dict:
    classifier = AcousticClassifier(AcousticOptions(threads=1))
    files = ravdess_files(data, actors)
    truth, predicted, window_ms = [], [], []
    for path, emotion, _actor in files:
        audio = trim(read_audio(path))
        result = classifier.classify(audio)
        truth.append(SENTIMENT_OF[emotion])
        predicted.append(max(result.sentiment, key=result.sentiment.__getitem__))
        for start in range(0, len(audio) - 8000 + 1, 8000):
            started = time.perf_counter()
            classifier.classify(audio[start : start + 8000])
            window_ms.append((time.perf_counter() - started) * 1000)
    return {
        "benchmark": "acoustic",
        "model": classifier.version,
        "files": len(files),
        "actors": sorted({a for _, _, a in files}),
        **three_way_report(truth, predicted),
        "ms_per_window": round(float(np.mean(window_ms)), 3),
        "ms_per_window_p95": round(float(np.percentile(window_ms, 95)), 3),
        "window_ms": 500,
        "threads": 1,
    }


def chosen_actors(actors: str) -> list[int] | None:
    """'all' → None (every actor), '' → the actors the shipped model held out, else the comma-separated list."""
    if actors == "all":
        return None
    if not actors:
        return held_out_actors()
    try:
        return [int(a) for a in actors.split(",")]
    except ValueError:
        unusable("acoustic", f"--actors takes 'all' or numbers like 17,18, not {actors!r}")


def main(data: Path, actors: str, as_json: bool) -> None:
    result = run(data, chosen_actors(actors))
    report(result, as_json)
