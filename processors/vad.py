"""Silero VAD v6 (ONNX, from the faster-whisper wheel) as a streaming per-session speech detector.

The graph takes ``[windows, 64 + 512]`` float input and one LSTM state ``h, c`` of shape ``[1, 1, 128]``: the first
axis is *time* (the state is carried from window to window inside one call), not a batch. So several windows of one
session go in one call, but sessions cannot share a call; at ~0.15 ms per window on one thread that costs nothing
worth batching for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from moodstream.processors.onnx import cpu_session

WINDOW = 512
"""Samples per VAD window (32 ms at 16 kHz)."""
CONTEXT = 64
"""Samples of the previous window the model sees before each window."""


def silero_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


def load_silero(path: Path | None = None) -> ort.InferenceSession:
    """One single-threaded onnxruntime session; share it between the sessions of a worker (calls are sequential)."""
    return cpu_session(path or silero_model_path(), threads=1)


class SileroStream:
    """Speech probability of consecutive 512-sample windows of one audio stream, with its context and state."""

    def __init__(self, model: ort.InferenceSession) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Forget the recurrent state and context (start of a stream, or a jump in it)."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities for ``windows`` int16 samples shaped ``[n, 512]``."""
        audio = windows.astype(np.float32) * (1.0 / 32768.0)  # float conversion only right before inference
        batch = np.empty((len(audio), CONTEXT + WINDOW), dtype=np.float32)
        batch[:, CONTEXT:] = audio
        batch[0, :CONTEXT] = self._context
        batch[1:, :CONTEXT] = audio[:-1, -CONTEXT:]
        probs, self._h, self._c = self.model.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = audio[-1, -CONTEXT:].copy()
        return probs.reshape(-1)


def speech_span(stream: SileroStream, pcm: np.ndarray, start_threshold: float, pad_samples: int) -> np.ndarray:
    """`pcm` (int16) from its first to its last window at or over `start_threshold`, widened by `pad_samples` each
    side; all of it when no window reaches the threshold. A whole clip's utterance as the endpointer would cut it."""
    stream.reset()
    usable = len(pcm) // WINDOW * WINDOW
    if usable == 0:
        return pcm
    speech = np.flatnonzero(stream(pcm[:usable].reshape(-1, WINDOW)) >= start_threshold)
    if not len(speech):
        return pcm
    return pcm[max(0, speech[0] * WINDOW - pad_samples) : min(len(pcm), (speech[-1] + 1) * WINDOW + pad_samples)]
