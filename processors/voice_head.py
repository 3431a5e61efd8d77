"""The voice's verdict read from the speech recogniser's encoder: Whisper's encoder states over an utterance, pooled,
through a linear head. Pure numpy, no Kafka.

The ASR already encodes every finished utterance, so this second opinion on the voice costs a pooling and a
768 × 3 product. The encoder was trained on far more voices and channels than the acoustic CNN's corpora hold, and
on speakers that no training split here contains it tells a calm voice from an acted emotional one better than the
CNN does; the two err on different clips, so the fusion stage averages them (`FusionOptions.encoder_voice_weight`).

The head (`models/acoustic/encoder_head.json`, written by `models/acoustic/train_encoder_head.py`) is tied to the
encoder it was fitted on: it names that encoder's model id, and a transcriber running another model gets no head.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import ACOUSTIC_MODEL_DIR

HEAD_FILE = "encoder_head.json"
FRAMES_PER_SECOND = 50
"""Whisper's encoder emits one state per 20 ms of audio."""


def pool_states(states: np.ndarray, start_s: float, duration_s: float) -> np.ndarray:
    """Mean and standard deviation of the encoder states that cover the speech ([frames, dim] → [2·dim])."""
    first = min(len(states) - 1, int(start_s * FRAMES_PER_SECOND))
    end = math.ceil(round((start_s + duration_s) * FRAMES_PER_SECOND, 6))  # round: 0.3 s is frame 15, not 16
    last = min(len(states), max(first + 1, end))
    speech = states[first:last].astype(np.float32)
    return np.concatenate((speech.mean(axis=0), speech.std(axis=0)))


@dataclass(frozen=True)
class EncoderVoiceHead:
    """Standardise the pooled states, then a multinomial logistic regression over `classes`."""

    encoder: str
    """Model id of the transcriber whose encoder states the head was fitted on."""
    classes: tuple[str, ...]
    """Output order: negative, neutral, positive."""
    mean: np.ndarray
    """Per-feature mean of the training rows, subtracted first."""
    scale: np.ndarray
    """Per-feature standard deviation of the training rows, divided by next."""
    coef: np.ndarray
    """[classes, features]."""
    intercept: np.ndarray
    """[classes]."""
    version: str
    """A hash of the weights: what a result's reader can name the head by."""

    @classmethod
    def load(cls, path: Path | None = None) -> EncoderVoiceHead:
        path = path or ACOUSTIC_MODEL_DIR / HEAD_FILE
        spec = json.loads(Path(path).read_text())
        return cls(
            encoder=spec["encoder"],
            classes=tuple(spec["classes"]),
            mean=np.asarray(spec["mean"], dtype=np.float32),
            scale=np.asarray(spec["scale"], dtype=np.float32),
            coef=np.asarray(spec["coef"], dtype=np.float32),
            intercept=np.asarray(spec["intercept"], dtype=np.float32),
            version=spec["version"],
        )

    def sentiment(self, features: np.ndarray) -> dict[str, float]:
        """negative / neutral / positive probabilities of one utterance's pooled states."""
        logits = self.coef @ ((features - self.mean) / self.scale) + self.intercept
        exp = np.exp(logits - logits.max())
        probs = exp / exp.sum()
        return {label: float(p) for label, p in zip(self.classes, probs, strict=True)}

    def to_json(self) -> str:
        return json.dumps(
            {
                "encoder": self.encoder,
                "classes": list(self.classes),
                "version": self.version,
                "mean": self.mean.round(6).tolist(),
                "scale": self.scale.round(6).tolist(),
                "coef": self.coef.round(6).tolist(),
                "intercept": self.intercept.round(6).tolist(),
            }
        )
