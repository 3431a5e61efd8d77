"""Acoustic emotion of a PCM window: one ONNX graph (MFCC inside, see models/acoustic/features.py) on onnxruntime.

Returns three-way sentiment and eight-way RAVDESS emotion probabilities, and the window's arousal from its prosody
(`processors.voice_head`, when the voice head ships). No torch: the features are part of the graph, so training and
serving cannot disagree on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.models import ACOUSTIC_MODEL_DIR
from moodstream.processors.onnx import cpu_session, model_version
from moodstream.processors.voice_head import VOICE_HEAD_FILE, VoiceHead
from moodstream.schemas.audio import ms_to_samples


@dataclass(frozen=True)
class AcousticOptions:
    """Acoustic classifier settings."""

    model_path: Path = ACOUSTIC_MODEL_DIR / "model.onnx"
    """ONNX graph with input `audio` [batch, samples] and outputs `sentiment`, `emotion`, `mfcc`."""
    min_window_ms: int = 500
    """Shorter input is repeated (not zero-padded, which would skew the per-window normalisation) to this length."""
    threads: int = 1
    """onnxruntime intra-op threads."""
    voice_head_path: Path = ACOUSTIC_MODEL_DIR / VOICE_HEAD_FILE
    """The voice head whose window-arousal head scores each window's prosody (none when the file is missing)."""


@dataclass(frozen=True)
class AcousticResult:
    sentiment: dict[str, float]
    """negative / neutral / positive."""
    emotions: dict[str, float]
    """The eight RAVDESS emotions."""
    compute_ms: float
    arousal: float | None = None
    """p(agitated) from the prosody; None without a voice head."""


class AcousticClassifier:
    def __init__(self, options: AcousticOptions | None = None) -> None:
        self.options = options or AcousticOptions()
        path = Path(self.options.model_path)
        self.session = cpu_session(path, self.options.threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.sentiments = meta["sentiments"].split(",")
        self.emotions = meta["emotions"].split(",")
        self.version = model_version("acoustic-cnn", path)
        self._min_samples = ms_to_samples(self.options.min_window_ms)
        head_path = Path(self.options.voice_head_path)
        self.voice_head = VoiceHead.load(head_path) if head_path.exists() else None

    def classify(self, pcm: bytes | np.ndarray) -> AcousticResult:
        started = time.perf_counter()
        audio = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else np.asarray(pcm)
        audio = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.astype(np.float32)
        if len(audio) == 0:
            audio = np.zeros(self._min_samples, dtype=np.float32)
        if len(audio) < self._min_samples:
            audio = np.resize(audio, self._min_samples)  # repeats the window
        sentiment, emotion = self.session.run(["sentiment", "emotion"], {"audio": audio[None, :]})
        arousal = self.voice_head.window_arousal(audio) if self.voice_head else None
        return AcousticResult(
            sentiment=dict(zip(self.sentiments, map(float, sentiment[0]), strict=True)),
            emotions=dict(zip(self.emotions, map(float, emotion[0]), strict=True)),
            compute_ms=round((time.perf_counter() - started) * 1000, 3),
            arousal=arousal,
        )
