"""Audio loading for clients: any file PyAV can read (wav, flac, mp3, g722 …) → 16 kHz mono int16 PCM."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moodstream.schemas.audio import SAMPLE_RATE

RAW_FORMATS = {".g722": "g722", ".gsm": "gsm", ".ul": "mulaw", ".al": "alaw"}
"""Headerless telephony files, whose container PyAV cannot guess from the content."""


def load_pcm16(path: str | Path, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Decode and resample a whole file to mono int16 little-endian PCM at ``sample_rate``."""
    import av

    path = Path(path)
    raw = RAW_FORMATS.get(path.suffix.lower())
    options = {"format": raw} if raw else {}
    chunks: list[np.ndarray] = []
    with av.open(str(path), **options) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return b""
    return np.concatenate(chunks).astype("<i2").tobytes()


def frames(pcm: bytes, frame_ms: int = 20, sample_rate: int = SAMPLE_RATE) -> list[bytes]:
    """Split PCM into frames of ``frame_ms`` (the last one may be shorter)."""
    size = sample_rate * 2 * frame_ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
