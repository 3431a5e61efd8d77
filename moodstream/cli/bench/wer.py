"""Word error rate with the normalisation the benchmarks use: case and punctuation removed, numbers as words."""

from __future__ import annotations

import re

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split()
)
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}  # fmt: skip


def number_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    if n < 1_000_000:
        return [*number_words(n // 1000), "thousand"] + (number_words(n % 1000) if n % 1000 else [])
    return [str(n)]


def ordinal_words(n: int) -> list[str]:
    words = number_words(n)
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return words


def normalize(text: str) -> list[str]:
    text = text.lower().replace("%", " percent").replace("&", " and ").replace("-", " ")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    out: list[str] = []
    for token in re.sub(r"[^a-z0-9' ]", " ", text).split():
        token = token.strip("'")
        match = re.fullmatch(r"(\d+)(st|nd|rd|th)?", token)
        if match and len(match.group(1)) <= 6:
            n = int(match.group(1))
            out.extend(ordinal_words(n) if match.group(2) else number_words(n))
        elif token:
            out.append(token)
    return out


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[len(hyp)]


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: total word edits over total reference words."""
    errors = words = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        r = normalize(ref)
        errors += edit_distance(r, normalize(hyp))
        words += len(r)
    return errors / max(1, words)
