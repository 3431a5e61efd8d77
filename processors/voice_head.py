"""How the speaker sounds, read from what the serving path already has: Whisper's encoder states over the utterance
(pooled) and the utterance's prosody (`moodstream.processors.prosody`), through linear heads. Pure numpy, no Kafka.

The ASR encodes every finished utterance anyway, so the utterance's verdict costs a pooling, the prosody and three
small matrix products. The encoder was trained on far more voices and channels than any emotional corpus here holds;
the prosody carries the cues of arousal that do not depend on the language (pitch, loudness contour, vocal effort).
Three heads read both:
- polarity (negative / neutral / positive), the voice's part of the fused verdict;
- emotion (angry / happy / sad / neutral), the four-way set IEMOCAP, SenseVoice and every corpus here share;
- arousal, p(agitated): 0 calm … 1 agitated.
A fourth, on the prosody of a 500 ms window alone, gives the arousal of each window while the user still speaks.

The heads were trained to read each feature both as it is and as it departs from the same speaker's other
utterances (a speaker-normalised direction); served, an utterance is read on its own, its departure taken from the
population's mean, which folds into one linear map on the features (`train_voice_head.fold`). Reading it against the
session's own earlier utterances was measured and not taken (decision record 0009): a speaker who stays upset would
soon sound "usual".

The head (`models/acoustic/voice_head.json`, written by `models/acoustic/train_voice_head.py`) is tied to the encoder
it was fitted on: it names that encoder's model id, and a transcriber running another model gets no utterance head
(the window head needs no encoder). Decision record 0009 says how each choice was measured.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.models import ACOUSTIC_MODEL_DIR
from moodstream.processors.prosody import prosody

VOICE_HEAD_FILE = "voice_head.json"
FRAMES_PER_SECOND = 50
"""Whisper's encoder emits one state per 20 ms of audio."""
POLARITY = ("negative", "neutral", "positive")
EMOTIONS = ("angry", "happy", "sad", "neutral")
HEADS = ("polarity", "emotion", "arousal", "window_arousal")
"""The linear heads of a `VoiceHead`: the first three read `features_of`, the last the prosody alone."""


def pool_states(states: np.ndarray, start_s: float, duration_s: float) -> np.ndarray:
    """Mean and standard deviation of the encoder states that cover the speech ([frames, dim] → [2·dim])."""
    first = min(len(states) - 1, int(start_s * FRAMES_PER_SECOND))
    end = math.ceil(round((start_s + duration_s) * FRAMES_PER_SECOND, 6))  # round: 0.3 s is frame 15, not 16
    last = min(len(states), max(first + 1, end))
    speech = states[first:last].astype(np.float32)
    return np.concatenate((speech.mean(axis=0), speech.std(axis=0)))


def features_of(pooled_states: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """An utterance's head input: its pooled encoder states, then its prosody."""
    return np.concatenate((pooled_states.astype(np.float32), prosody(audio)))


@dataclass(frozen=True)
class VoiceVerdict:
    """What the voice head read from one utterance."""

    polarity: dict[str, float]
    """negative / neutral / positive probabilities."""
    emotion: dict[str, float]
    """angry / happy / sad / neutral probabilities."""
    arousal: float
    """p(agitated): 0 calm … 1 agitated."""
    head: str = ""
    """The version of the head that read it."""


@dataclass(frozen=True)
class LinearHead:
    """Standardise, then one affine map: softmax over several classes, a logistic for one."""

    mean: np.ndarray
    """Per-input mean of the training rows."""
    scale: np.ndarray
    """Per-input standard deviation of the training rows."""
    coef: np.ndarray
    """[classes, inputs]; one row for a logistic."""
    intercept: np.ndarray
    """[classes]."""

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        logits = self.coef @ ((inputs - self.mean) / self.scale) + self.intercept
        if len(logits) == 1:
            return 1.0 / (1.0 + np.exp(-logits))
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    def to_dict(self) -> dict[str, list]:
        return {name: getattr(self, name).round(6).tolist() for name in ("mean", "scale", "coef", "intercept")}

    @classmethod
    def from_dict(cls, spec: dict[str, list]) -> LinearHead:
        return cls(
            **{name: np.asarray(spec[name], dtype=np.float32) for name in ("mean", "scale", "coef", "intercept")}
        )


@dataclass(frozen=True)
class VoiceHead:
    """The four heads and the encoder they were fitted on."""

    encoder: str
    """Model id of the transcriber whose encoder states the utterance heads were fitted on."""
    heads: dict[str, LinearHead]
    """By name, `HEADS`."""
    version: str
    """A hash of the weights: what a result's reader can name the head by."""

    @classmethod
    def build(cls, encoder: str, heads: dict[str, LinearHead]) -> VoiceHead:
        digest = hashlib.sha256(b"".join(heads[name].coef.tobytes() for name in HEADS)).hexdigest()[:12]
        return cls(encoder, heads, f"voice-head-{digest}")

    def read(self, features: np.ndarray) -> VoiceVerdict:
        """The verdict on one utterance's `features_of`."""
        polarity = self.heads["polarity"].probabilities(features)
        emotion = self.heads["emotion"].probabilities(features)
        return VoiceVerdict(
            {k: float(v) for k, v in zip(POLARITY, polarity, strict=True)},
            {k: float(v) for k, v in zip(EMOTIONS, emotion, strict=True)},
            float(self.heads["arousal"].probabilities(features)[0]),
            self.version,
        )

    def window_arousal(self, audio: np.ndarray) -> float:
        """p(agitated) of a short window (500 ms while the user speaks), from its prosody alone."""
        return float(self.heads["window_arousal"].probabilities(prosody(audio))[0])

    @classmethod
    def load(cls, path: Path | None = None) -> VoiceHead:
        spec = json.loads(Path(path or ACOUSTIC_MODEL_DIR / VOICE_HEAD_FILE).read_text())
        heads = {name: LinearHead.from_dict(spec["heads"][name]) for name in HEADS}
        return cls(spec["encoder"], heads, spec["version"])

    def to_json(self) -> str:
        heads = {name: self.heads[name].to_dict() for name in HEADS}
        return json.dumps({"encoder": self.encoder, "version": self.version, "heads": heads})
