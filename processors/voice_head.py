"""How the speaker sounds, read from what the serving path already has: Whisper's encoder states over the utterance
(pooled) and the utterance's prosody (`processors.prosody`), through linear heads. Pure numpy, no Kafka.

The ASR encodes every finished utterance anyway, so the utterance's verdict costs a pooling, the prosody and three
small matrix products. The encoder was trained on far more voices and channels than any emotional corpus here holds;
the prosody carries the cues of arousal that do not depend on the language (pitch, loudness contour, vocal effort).
Three heads read both:
- polarity (negative / neutral / positive), the voice's part of the fused verdict;
- emotion (angry / happy / sad / neutral), the four-way set IEMOCAP, SenseVoice and every corpus here share;
- arousal, p(agitated): 0 calm … 1 agitated.
A fourth, on the prosody of a 500 ms window alone, gives the arousal of each window while the user still speaks.

In a stream the same speaker is heard again and again, so the heads also read how an utterance departs from the
speaker's own earlier ones (`SessionBaseline`: their running mean, shrunk towards the population's while the session
is young): a voice is agitated for this speaker, not for the average one. A session's first utterance departs from
the population; a worker that takes a session over starts its baseline afresh.

The head (`models/acoustic/voice_head.json`, written by `models/acoustic/train_voice_head.py`) is tied to the encoder
it was fitted on: it names that encoder's model id, and a transcriber running another model gets no utterance head
(the window head needs no encoder). Decision record 0009 says how each choice was measured.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import ACOUSTIC_MODEL_DIR
from processors.prosody import prosody

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


@dataclass
class SessionBaseline:
    """One speaker's usual voice so far: the mean of the utterances added, shrunk towards the population's mean by
    `prior_weight` utterances' worth. Added once per utterance, in order (`add` skips a sequence number already
    seen, so a replayed utterance does not count twice)."""

    population: np.ndarray
    """The training rows' mean feature vector."""
    prior_weight: float
    """How many utterances' worth the population mean counts for."""
    count: int = 0
    """Utterances added."""
    total: np.ndarray | None = field(default=None, repr=False)
    """Sum of their features."""
    last_seq: int = -1
    """Sequence number of the last utterance added."""

    def mean(self) -> np.ndarray:
        total = self.total if self.total is not None else 0.0
        return (total + self.prior_weight * self.population) / (self.count + self.prior_weight)

    def add(self, features: np.ndarray, seq: int | None = None) -> None:
        if seq is not None:
            if seq <= self.last_seq:
                return
            self.last_seq = seq
        self.total = features.astype(np.float64) if self.total is None else self.total + features
        self.count += 1


@dataclass(frozen=True)
class VoiceHead:
    """The four heads, what they read, and the encoder they were fitted on."""

    encoder: str
    """Model id of the transcriber whose encoder states the utterance heads were fitted on."""
    heads: dict[str, LinearHead]
    """By name, `HEADS`."""
    version: str
    """A hash of the weights: what a result's reader can name the head by."""
    inputs: str = "raw"
    """What the utterance heads read: "raw" features, or "both": the features and their departure from the session
    baseline, concatenated."""
    population: np.ndarray | None = None
    """For "both": the baseline's prior, the training rows' mean feature vector."""
    prior_weight: float = 2.0
    """For "both": `SessionBaseline.prior_weight`."""

    @classmethod
    def build(cls, encoder: str, heads: dict[str, LinearHead], inputs: str = "raw",
              population: np.ndarray | None = None, prior_weight: float = 2.0) -> VoiceHead:  # fmt: skip
        digest = hashlib.sha256(b"".join(heads[name].coef.tobytes() for name in HEADS)).hexdigest()[:12]
        return cls(encoder, heads, f"voice-head-{digest}", inputs, population, prior_weight)

    def baseline(self) -> SessionBaseline | None:
        """A new session's baseline (None when the heads read no history)."""
        if self.inputs != "both" or self.population is None:
            return None
        return SessionBaseline(self.population, self.prior_weight)

    def inputs_of(self, features: np.ndarray, baseline: SessionBaseline | None) -> np.ndarray:
        """What the utterance heads read for `features_of` one utterance, given the session so far."""
        if self.inputs != "both":
            return features
        usual = baseline.mean() if baseline is not None else self.population
        return np.concatenate((features, features - usual))

    def read(
        self, features: np.ndarray, baseline: SessionBaseline | None = None, seq: int | None = None
    ) -> VoiceVerdict:
        """The verdict on one utterance's `features_of`; the utterance then joins `baseline` (as number `seq`). No
        baseline: the utterance is read as a session's first."""
        inputs = self.inputs_of(features, baseline)
        if baseline is not None:
            baseline.add(features, seq)
        polarity = self.heads["polarity"].probabilities(inputs)
        emotion = self.heads["emotion"].probabilities(inputs)
        return VoiceVerdict(
            {k: float(v) for k, v in zip(POLARITY, polarity, strict=True)},
            {k: float(v) for k, v in zip(EMOTIONS, emotion, strict=True)},
            float(self.heads["arousal"].probabilities(inputs)[0]),
        )

    def window_arousal(self, audio: np.ndarray) -> float:
        """p(agitated) of a short window (500 ms while the user speaks), from its prosody alone."""
        return float(self.heads["window_arousal"].probabilities(prosody(audio))[0])

    @classmethod
    def load(cls, path: Path | None = None) -> VoiceHead:
        spec = json.loads(Path(path or ACOUSTIC_MODEL_DIR / VOICE_HEAD_FILE).read_text())
        heads = {name: LinearHead.from_dict(spec["heads"][name]) for name in HEADS}
        population = np.asarray(spec["population"], dtype=np.float32) if spec.get("population") else None
        return cls(spec["encoder"], heads, spec["version"], spec.get("inputs", "raw"), population,
                   spec.get("prior_weight", 2.0))  # fmt: skip

    def to_json(self) -> str:
        heads = {name: self.heads[name].to_dict() for name in HEADS}
        population = self.population.round(6).tolist() if self.population is not None else None
        return json.dumps({"encoder": self.encoder, "version": self.version, "inputs": self.inputs,
                           "prior_weight": self.prior_weight, "population": population, "heads": heads})  # fmt: skip


class VoiceSessions:
    """The baselines of the sessions a worker hears, the least recently heard forgotten first beyond `capacity` (a
    forgotten or taken-over session starts afresh, its next utterance read as a first one). One thread only."""

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._baselines: OrderedDict[str, SessionBaseline] = OrderedDict()

    def baseline(self, session_id: str, head: VoiceHead | None) -> SessionBaseline | None:
        """`session_id`'s baseline (a new one the first time); None when `head` reads no history."""
        found = self._baselines.get(session_id)
        if found is None:
            found = head.baseline() if head is not None else None
            if found is None:
                return None
            self._baselines[session_id] = found
            while len(self._baselines) > self.capacity:
                self._baselines.popitem(last=False)
        self._baselines.move_to_end(session_id)
        return found

    def __len__(self) -> int:
        return len(self._baselines)
