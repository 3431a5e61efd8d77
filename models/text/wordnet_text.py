"""Text with and without sentiment words, from WordNet and the VADER lexicon: the neutral class's training data.

SST-2 has only positive and negative phrases, so a model trained on it alone is confidently polar about plain
statements ("Dogs are sitting by the door": 0.86 negative). WordNet's usage examples (Debian package ``wordnet-base``)
that contain no word of the VADER sentiment lexicon (PyPI ``vaderSentiment``, MIT) are neutral sentences; examples
VADER scores clearly polar keep that polarity (with only movie reviews as polar text, a model learns "an everyday
sentence is neutral" and calls "The service was terrible." neutral); WordNet's lemmas without lexicon words are
neutral fragments (spoken transcripts are often one or two words). Labels follow the text model's logit order:
0 negative, 1 positive, 2 neutral. Training only.
"""

from __future__ import annotations

import gzip
import re
from importlib import resources
from pathlib import Path

import numpy as np

NEGATIVE, POSITIVE, NEUTRAL = 0, 1, 2
LABELS = {NEGATIVE: "negative", POSITIVE: "positive", NEUTRAL: "neutral"}


def sentiment_lexicon() -> set[str]:
    """Every token of the VADER lexicon, whatever its valence: a sentence using none carries no lexical sentiment."""
    text = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text(encoding="utf-8")
    return {line.split("\t", 1)[0].lower() for line in text.splitlines() if line.strip()}


def words(sentence: str) -> list[str]:
    return re.findall(r"[a-z']+", sentence.lower())


def wordnet_examples(wordnet: Path) -> list[str]:
    """The quoted usage examples in WordNet's data files, deduplicated, in file order."""
    seen: dict[str, None] = {}
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue
            for example in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]):
                seen.setdefault(example.strip().rstrip(";").strip(), None)
    return list(seen)


def wordnet_lemmas(wordnet: Path) -> list[str]:
    """Every lemma of WordNet's index files, underscores as spaces."""
    lemmas = []
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet / f"index.{part}").read_text(encoding="latin-1").splitlines():
            if not line.startswith(" "):
                lemmas.append(line.split(" ", 1)[0].replace("_", " "))
    return lemmas


def lexically_neutral(sentences: list[str], lexicon: set[str]) -> list[str]:
    return [s for s in sentences if words(s) and not lexicon.intersection(words(s))]


def lexically_polar(sentences: list[str], lexicon: set[str], threshold: float) -> list[tuple[str, int]]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    polar = []
    for sentence in sentences:
        if lexicon.intersection(words(sentence)):
            compound = analyzer.polarity_scores(sentence)["compound"]
            if abs(compound) >= threshold:
                polar.append((sentence, POSITIVE if compound > 0 else NEGATIVE))
    return polar


def asterisk_prompts(path: Path) -> list[str]:
    """`name: text` lines of the Asterisk prompt list, bracketed non-speech entries skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = [line.split(":", 1)[1].strip() for line in handle if ":" in line and not line.startswith(";")]
    return [t for t in lines if t and not t.startswith("[")]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(labels)), labels]
        return float(-np.mean(np.log(np.clip(p, 1e-9, 1.0))))

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 400))
    best = float(grid[np.argmin([nll(t) for t in grid])])
    return best, nll(1.0), nll(best)
