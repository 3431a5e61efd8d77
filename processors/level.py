"""Streaming loudness meter: int16 PCM in, one RMS/peak reading per fixed window of session time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moodstream.schemas.audio import SAMPLE_RATE

_FULL_SCALE = 32768.0
_FLOOR_DBFS = -120.0


@dataclass(frozen=True)
class LevelReading:
    """Loudness of one window of session audio."""

    start_ms: float
    """Window start in session time."""
    end_ms: float
    """Window end in session time."""
    rms_dbfs: float
    """Root-mean-square level in dB relative to full scale (−120 for digital silence)."""
    peak_dbfs: float
    """Largest absolute sample in dBFS."""


def _dbfs(value: float) -> float:
    return _FLOOR_DBFS if value <= 0 else max(_FLOOR_DBFS, 20.0 * math.log10(value / _FULL_SCALE))


class LevelMeter:
    """Per-session state: accumulates energy and peak until a window of ``window_ms`` is complete; ``window_ms`` 0:
    no readings at all (a meter nobody shows)."""

    def __init__(self, window_ms: int = 500) -> None:
        self.window_samples = SAMPLE_RATE * window_ms // 1000
        self.reset()

    def reset(self, start_sample: int = 0) -> None:
        """Forget the partial window; the next sample fed is at ``start_sample`` of session time."""
        self._start = start_sample
        self._count = 0
        self._sum_squares = 0.0
        self._peak = 0.0

    def feed(self, pcm: bytes, start_sample: int) -> list[LevelReading]:
        """Add a frame; returns the readings of the windows it completes (usually none or one)."""
        if self.window_samples == 0:
            return []
        if self._count == 0:
            self._start = start_sample
        samples = np.frombuffer(pcm, dtype="<i2")
        readings: list[LevelReading] = []
        offset = 0
        while offset < len(samples):
            take = min(self.window_samples - self._count, len(samples) - offset)
            chunk = samples[offset : offset + take].astype(np.float64)
            self._sum_squares += float(np.dot(chunk, chunk))
            self._peak = max(self._peak, float(np.abs(chunk).max()))
            self._count += take
            offset += take
            if self._count == self.window_samples:
                readings.append(self._reading())
                self.reset(self._start + self.window_samples)
        return readings

    def flush(self) -> LevelReading | None:
        """Reading of the partial window (end of session), if any audio is pending."""
        if self._count == 0:
            return None
        reading = self._reading()
        self.reset(self._start + self._count)
        return reading

    def _reading(self) -> LevelReading:
        rms = math.sqrt(self._sum_squares / self._count)
        return LevelReading(
            start_ms=self._start * 1000 / SAMPLE_RATE,
            end_ms=(self._start + self._count) * 1000 / SAMPLE_RATE,
            rms_dbfs=round(_dbfs(rms), 2),
            peak_dbfs=round(_dbfs(self._peak), 2),
        )
