"""Text sentiment: a fine-tuned BERT-family encoder (ONNX int8) on tokenizers + onnxruntime. No torch.

The committed model has three outputs (negative, positive, neutral) and was trained on conversation, reviews and
neutral text, with the previous utterance of the dialogue as optional context (`models/text/MODEL_CARD.md`,
`models/text/train_conversation.py`). Its logits become calibrated probabilities (temperature scaling fitted on
held-out data, stored beside the model). A binary model (any exported SST-2 checkpoint) still works: a neutral band
around 50/50 then stands in for the class it lacks. Empty or rejected transcripts get an explicit "no text" result
rather than a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from moodstream.models import TEXT_MODEL_DIR
from moodstream.processors.onnx import cpu_session, model_version

MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
CALIBRATION_FILE = "calibration.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class TextSentimentOptions:
    """Text classifier settings."""

    model_dir: Path = TEXT_MODEL_DIR
    """Folder with model.int8.onnx, tokenizer.json and optionally calibration.json."""
    max_tokens: int = 128
    """Longer transcripts are truncated (SST-2 sentences rarely exceed 60 tokens)."""
    context_words: int = 24
    """Of a previous utterance given as context, only its last this many words are kept."""
    neutral_band: float = 0.4
    """Binary models only: |p(positive) − p(negative)| below this gives neutral mass; 0 disables it."""
    threads: int = 1
    """onnxruntime intra-op threads."""


@dataclass(frozen=True)
class TextSentiment:
    """Sentiment of one text."""

    has_text: bool
    """False for empty or rejected transcripts: the scores are then uniform and mean nothing."""
    negative: float
    neutral: float
    positive: float
    p_positive: float
    """Polarity alone: p(positive) / (p(positive) + p(negative)), whatever the neutral mass."""

    @property
    def label(self) -> str:
        scores = {"negative": self.negative, "neutral": self.neutral, "positive": self.positive}
        return max(scores, key=scores.__getitem__)


NO_TEXT = TextSentiment(False, 1 / 3, 1 / 3, 1 / 3, 0.5)


class TextClassifier:
    """Batching sentiment classifier; thread-compatible (one call at a time per instance)."""

    def __init__(self, options: TextSentimentOptions | None = None) -> None:
        self.options = options or TextSentimentOptions()
        model_dir = Path(self.options.model_dir)
        self.session = cpu_session(model_dir / MODEL_FILE, self.options.threads)
        self.tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(self.options.max_tokens)
        self.tokenizer.enable_padding()
        calibration = model_dir / CALIBRATION_FILE
        self.temperature = float(json.loads(calibration.read_text())["temperature"]) if calibration.exists() else 1.0
        metrics = model_dir / METRICS_FILE
        trained = json.loads(metrics.read_text()).get("train", {}) if metrics.exists() else {}
        self.uses_context = float(trained.get("context_share", 0.0)) > 0
        """Trained on (previous utterance, utterance) pairs: the text reader then gives each utterance its context."""
        self.version = model_version(model_dir.name, model_dir / MODEL_FILE)

    def logits(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        """Raw logits; with `contexts`, each text is encoded as the pair (its context, the text)."""
        if contexts is None:
            encodings = self.tokenizer.encode_batch(texts)
        else:
            keep = self.options.context_words
            pairs = [(" ".join(c.split()[-keep:]), t) if c.strip() else t for c, t in zip(contexts, texts, strict=True)]
            encodings = self.tokenizer.encode_batch(pairs)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]

    def classify(self, texts: list[str], contexts: list[str] | None = None) -> list[TextSentiment]:
        """Scores for each text, in order; blank texts get NO_TEXT. `contexts[i]` is the utterance said before
        `texts[i]` in the same conversation ("" for none); only a model trained with context should be given it."""
        results: list[TextSentiment | None] = [None if t.strip() else NO_TEXT for t in texts]
        real = [i for i, r in enumerate(results) if r is None]
        if real:
            chosen = None if contexts is None else [contexts[i] for i in real]
            logits = self.logits([texts[i].strip() for i in real], chosen) / self.temperature
            margin = logits[:, 1] - logits[:, 0]
            p_pos = 1.0 / (1.0 + np.exp(-margin))
            if logits.shape[1] == 3:
                shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
                probs = shifted / shifted.sum(axis=1, keepdims=True)
                for i, row, p in zip(real, probs, p_pos, strict=True):
                    results[i] = TextSentiment(True, float(row[0]), float(row[2]), float(row[1]), float(p))
            else:
                for i, p in zip(real, p_pos, strict=True):
                    results[i] = self._three_way(float(p))
        return results  # type: ignore[return-value]

    def _three_way(self, p_pos: float) -> TextSentiment:
        band = self.options.neutral_band
        margin = abs(2 * p_pos - 1)
        neutral = max(0.0, 1.0 - margin / band) if band > 0 else 0.0
        return TextSentiment(True, (1 - neutral) * (1 - p_pos), neutral, (1 - neutral) * p_pos, p_pos)
