"""Classification figures shared by the training scripts and `moodstream bench`: numpy only."""

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


def class_report(truth: Sequence[str], predicted: Sequence[str], order: Sequence[str]) -> dict:
    """UAR over the classes present in `truth`, their recall, and the confusion (rows true, columns predicted, both in
    `order`)."""
    confusion = np.zeros((len(order), len(order)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[order.index(t), order.index(p)] += 1
    support = confusion.sum(axis=1)
    recall = {c: round(float(confusion[i, i] / support[i]), 4) for i, c in enumerate(order) if support[i]}
    return {"clips": len(truth), "uar": round(float(np.mean(list(recall.values()))), 4) if recall else 0.0,
            "recall": recall, "confusion": confusion.tolist()}  # fmt: skip


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Area under the ROC curve: the chance that a positive scores above a negative, ties counting half (the rank
    statistic with tied scores given their mean rank); None when one side is empty."""
    values, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return None
    _, tie, counts = np.unique(values, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0  # ranks from 1; a tie group shares its mean
    return float((mean_rank[tie][positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
