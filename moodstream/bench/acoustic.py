"""`moodstream bench acoustic --data DIR`: 3-class UAR, accuracy and confusion on RAVDESS-named files, and ms per
500 ms window on one thread. Only the actors the shipped model held out are scored unless --actors says otherwise."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from models import ACOUSTIC_MODEL_DIR
from moodstream.bench import report
from processors.acoustic import AcousticClassifier, AcousticOptions

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SENTIMENT_OF = {"neutral": "neutral", "calm": "neutral", "happy": "positive", "surprised": "positive",
                "sad": "negative", "angry": "negative", "fearful": "negative", "disgust": "negative"}  # fmt: skip
SENTIMENTS = ("negative", "neutral", "positive")


def held_out_actors() -> list[int]:
    return json.loads((ACOUSTIC_MODEL_DIR / "metrics.json").read_text())["held_out_actors"]


def ravdess_files(root: Path, actors: list[int] | None) -> list[tuple[Path, str, int]]:
    files = []
    for path in sorted(root.rglob("*")):
        parts = path.stem.split("-")
        if path.suffix.lower() not in (".flac", ".wav") or len(parts) != 7:
            continue
        emotion, actor = EMOTIONS[int(parts[2]) - 1], int(parts[6])
        if actors is None or actor in actors:
            files.append((path, emotion, actor))
    return files


def uar_report(truth: list[str], predicted: list[str]) -> dict:
    confusion = np.zeros((3, 3), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[SENTIMENTS.index(t), SENTIMENTS.index(p)] += 1
    recalls = confusion.diagonal() / np.maximum(1, confusion.sum(axis=1))
    return {
        "uar": round(float(recalls.mean()), 4),
        "accuracy": round(float(confusion.diagonal().sum() / max(1, confusion.sum())), 4),
        "confusion": confusion.tolist(),
        "confusion_labels": list(SENTIMENTS),
    }


def run(data: Path, actors: list[int] | None) -> dict:
    import soundfile

    from models.acoustic.train_ravdess import trim  # numpy only: the endpointer-like trim used in training

    classifier = AcousticClassifier(AcousticOptions(threads=1))
    files = ravdess_files(data, actors)
    truth, predicted, window_ms = [], [], []
    for path, emotion, _actor in files:
        audio, _rate = soundfile.read(str(path), dtype="int16")
        audio = trim(audio.astype(np.float32) / 32768.0)
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
        **uar_report(truth, predicted),
        "ms_per_window": round(float(np.mean(window_ms)), 3),
        "ms_per_window_p95": round(float(np.percentile(window_ms, 95)), 3),
        "window_ms": 500,
        "threads": 1,
    }


def main(data: Path, actors: str, as_json: bool) -> None:
    chosen = None if actors == "all" else ([int(a) for a in actors.split(",")] if actors else held_out_actors())
    result = run(data, chosen)
    report(result, as_json)
