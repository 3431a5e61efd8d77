"""The audio format of the whole product: 16 kHz mono int16 little-endian PCM, and conversions between its units."""

from __future__ import annotations

SAMPLE_RATE = 16_000
"""The only sample rate the protocol accepts."""
BYTES_PER_SAMPLE = 2
"""int16."""


def ms_to_samples(ms: float) -> int:
    return round(ms * SAMPLE_RATE / 1000)


def samples_to_ms(samples: int) -> float:
    return samples * 1000.0 / SAMPLE_RATE


def ms_to_bytes(ms: float) -> int:
    return ms_to_samples(ms) * BYTES_PER_SAMPLE
