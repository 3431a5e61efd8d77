"""Three-way classification figures shared by the training scripts and `moodstream bench`: numpy only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LABELS3 = ("negative", "neutral", "positive")


def three_way_report(truth: Sequence[str], predicted: Sequence[str]) -> dict:
    """Accuracy; UAR and macro F1 over the classes present in `truth`; support-weighted F1; per-class recall;
    the shares of the predictions; the confusion (rows true negative/neutral/positive, columns predicted)."""
    confusion = np.zeros((3, 3), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[LABELS3.index(t), LABELS3.index(p)] += 1
    support = confusion.sum(axis=1)
    total = max(1, int(confusion.sum()))
    recall = confusion.diagonal() / np.maximum(1, support)
    precision = confusion.diagonal() / np.maximum(1, confusion.sum(axis=0))
    f1 = 2 * precision * recall / np.maximum(1e-9, precision + recall)
    present = support > 0
    return {
        "uar": round(float(recall[present].mean()), 4) if present.any() else 0.0,
        "accuracy": round(float(confusion.diagonal().sum() / total), 4),
        "macro_f1": round(float(f1[present].mean()), 4) if present.any() else 0.0,
        "weighted_f1": round(float((f1 * support).sum() / total), 4),
        "recall": {k: round(float(r), 4) for k, r, p in zip(LABELS3, recall, present, strict=True) if p},
        "shares": {k: round(float(n / total), 4) for k, n in zip(LABELS3, confusion.sum(axis=0), strict=True)},
        "confusion": confusion.tolist(),
    }
