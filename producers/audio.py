"""Audio loading for clients: any file PyAV can read (wav, flac, mp3, g722 …) → 16 kHz int16 PCM, mono or, for a
call, interleaved stereo."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moodstream.schemas.audio import SAMPLE_RATE

RAW_FORMATS = {".g722": "g722", ".gsm": "gsm", ".ul": "mulaw", ".al": "alaw"}
"""Headerless telephony files, whose container PyAV cannot guess from the content."""


def load_pcm16(path: str | Path, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    """Decode and resample a whole file to int16 little-endian PCM at ``sample_rate``: mono (a stereo file mixed
    down), or with ``channels`` 2, interleaved stereo (left sample first)."""
    import av

    path = Path(path)
    raw = RAW_FORMATS.get(path.suffix.lower())
    options = {"format": raw} if raw else {}
    chunks: list[np.ndarray] = []
    with av.open(str(path), **options) as container:
        layout = "stereo" if channels == 2 else "mono"
        resampler = av.AudioResampler(format="s16", layout=layout, rate=sample_rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return b""
    return np.concatenate(chunks).astype("<i2").tobytes()


def channel_count(path: str | Path) -> int:
    """Channels of the file's first audio stream."""
    import av

    path = Path(path)
    raw = RAW_FORMATS.get(path.suffix.lower())
    with av.open(str(path), **({"format": raw} if raw else {})) as container:
        return container.streams.audio[0].codec_context.channels


def load_speech(path: str | Path, mono: bool = False) -> tuple[bytes, int]:
    """A file's PCM and its channel count as a session would send it: a stereo file whose channels differ is a call
    (interleaved, 2); any other file, or any file with ``mono``, is one voice (mixed down, 1). A mono recording
    stored as stereo (both channels the same) stays one voice."""
    if mono or channel_count(path) != 2:
        return load_pcm16(path), 1
    stereo = load_pcm16(path, channels=2)
    samples = np.frombuffer(stereo, dtype="<i2").reshape(-1, 2)
    if np.array_equal(samples[:, 0], samples[:, 1]):
        return samples[:, 0].tobytes(), 1
    return stereo, 2


def frames(pcm: bytes, frame_ms: int = 20, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> list[bytes]:
    """Split PCM of ``channels`` interleaved channels into frames of ``frame_ms`` (the last one may be shorter)."""
    size = sample_rate * 2 * channels * frame_ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
