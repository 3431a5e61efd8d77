"""`moodstream bench text --tsv FILE`: accuracy and cost of the text sentiment model on one thread.

Two formats, told apart by the header (fields never quoted; some sentences start with `"`):
- `sentence<TAB>label`, label 1 positive / 0 negative (SST-2): accuracy of positive vs negative mass;
- `sentence<TAB>label3[<TAB>…]`, label3 negative / neutral / positive (dialogue corpora): accuracy, UAR, macro and
  weighted F1, per-class recall, prediction shares and the confusion (rows true negative/neutral/positive).
With `--context` and a `source_id` column (`corpus:split:dialogue:turn`), each sentence gets the previous sentence of
its dialogue as context, as a session's previous utterance in serving.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from moodstream.cli.bench import report, unusable
from moodstream.models.datasets import read_rows
from moodstream.models.metrics import LABELS3, three_way_report
from moodstream.processors.text_sentiment import TextClassifier, TextSentimentOptions


def previous_in_dialogue(rows: list[dict[str, str]]) -> list[str]:
    """For each row, the sentence of the row before it in the same dialogue (`source_id` minus its last part)."""
    last: dict[str, str] = {}
    contexts = []
    for row in rows:
        dialogue = row.get("source_id", "").rsplit(":", 1)[0]
        contexts.append(last.get(dialogue, "") if dialogue else "")
        if dialogue:
            last[dialogue] = row["sentence"].strip()
    return contexts


def timed_labels(
    classifier: TextClassifier, sentences: list[str], contexts: list[str] | None
) -> tuple[list[str], list[float], list[float]]:
    """Label and p(positive | polar) of each sentence, classified one at a time; and the ms each took."""
    labels, p_positive, timings = [], [], []
    for i, sentence in enumerate(sentences):
        started = time.perf_counter()
        result = classifier.classify([sentence], None if contexts is None else [contexts[i]])[0]
        timings.append((time.perf_counter() - started) * 1000)
        labels.append(result.label)
        p_positive.append(result.p_positive)
    return labels, p_positive, timings


def run(tsv: Path, model_dir: Path | None = None, context: bool = False) -> dict:
    rows = read_rows(tsv)
    if not rows or "sentence" not in rows[0] or not ({"label", "label3"} & set(rows[0])):
        unusable("text", f"{tsv}: needs a header with sentence and label (0/1) or label3 (negative/neutral/positive)")
    three_way = "label3" in rows[0]
    if three_way and {r["label3"] for r in rows} - set(LABELS3):
        unusable("text", f"{tsv}: label3 must be negative, neutral or positive")
    options = TextSentimentOptions(threads=1) if model_dir is None else TextSentimentOptions(model_dir, threads=1)
    classifier = TextClassifier(options)
    sentences = [r["sentence"].strip() for r in rows]
    contexts = previous_in_dialogue(rows) if context else None
    classifier.classify(sentences[:8])  # warm-up
    labels, p_positive, timings = timed_labels(classifier, sentences, contexts)
    started = time.perf_counter()
    for i in range(0, len(sentences), 8):
        classifier.classify(sentences[i : i + 8], None if contexts is None else contexts[i : i + 8])
    batch8_s = time.perf_counter() - started
    result: dict = {"benchmark": "text", "model": classifier.version, "sentences": len(sentences),
                    "format": "label3" if three_way else "binary", "context": context}  # fmt: skip
    if three_way:
        result |= three_way_report([r["label3"] for r in rows], labels)
    else:
        right = [(p >= 0.5) == bool(int(r["label"])) for p, r in zip(p_positive, rows, strict=True)]
        result["accuracy"] = round(float(np.mean(right)), 4)
    return result | {
        "ms_p50": round(float(np.percentile(timings, 50)), 3),
        "ms_p95": round(float(np.percentile(timings, 95)), 3),
        "sentences_per_s_batch8": round(len(sentences) / batch8_s, 1),
        "threads": 1,
        "temperature": classifier.temperature,
    }


def main(tsv: Path, model_dir: Path | None, context: bool, as_json: bool) -> None:
    report(run(tsv, model_dir, context), as_json)
