"""`moodstream bench text --tsv FILE`: accuracy and cost of the text sentiment model on one thread."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from moodstream.bench import report
from processors.text_sentiment import TextClassifier, TextSentimentOptions


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"].strip() for r in rows], [int(r["label"]) for r in rows]


def run(tsv: Path, model_dir: Path | None = None) -> dict:
    options = TextSentimentOptions(threads=1) if model_dir is None else TextSentimentOptions(model_dir, threads=1)
    classifier = TextClassifier(options)
    sentences, labels = read_tsv(tsv)
    classifier.classify(sentences[:8])  # warm-up
    timings, correct = [], 0
    for sentence, label in zip(sentences, labels, strict=True):
        started = time.perf_counter()
        result = classifier.classify([sentence])[0]
        timings.append((time.perf_counter() - started) * 1000)
        correct += int((result.p_positive >= 0.5) == bool(label))
    started = time.perf_counter()
    for i in range(0, len(sentences), 8):
        classifier.classify(sentences[i : i + 8])
    batch8_s = time.perf_counter() - started
    return {
        "benchmark": "text",
        "model": classifier.version,
        "sentences": len(sentences),
        "accuracy": round(correct / len(sentences), 4),
        "ms_p50": round(float(np.percentile(timings, 50)), 3),
        "ms_p95": round(float(np.percentile(timings, 95)), 3),
        "sentences_per_s_batch8": round(len(sentences) / batch8_s, 1),
        "threads": 1,
        "temperature": classifier.temperature,
    }


def main(tsv: Path, model_dir: Path | None, as_json: bool) -> None:
    result = run(tsv, model_dir)
    report(result, as_json)
