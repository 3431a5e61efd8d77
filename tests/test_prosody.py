"""Prosody features: the pitch tracker finds a known pitch, a microphone's gain moves only the level, and a rising
glide shows as range and slope."""

from __future__ import annotations

import numpy as np
import pytest

from moodstream.processors.prosody import FEATURES, SAMPLE_RATE, prosody

T = np.arange(SAMPLE_RATE) / SAMPLE_RATE


def harmonic(f0: np.ndarray | float, amplitude: float = 0.3) -> np.ndarray:
    """A voice-like tone: seven harmonics falling 1/k, following `f0` (Hz, per sample or constant)."""
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(f0, T.shape)) / SAMPLE_RATE
    return (amplitude * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)


def feature(values: np.ndarray, name: str) -> float:
    return float(values[FEATURES.index(name)])


@pytest.mark.parametrize("f0", [80.0, 150.0, 300.0])
def test_the_pitch_of_a_harmonic_tone_is_found(f0: float) -> None:
    semitones = feature(prosody(harmonic(f0)), "f0_mean_st")
    assert 100 * 2 ** (semitones / 12) == pytest.approx(f0, rel=0.01)


def test_gain_moves_the_level_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    voice = harmonic(140.0) + 0.01 * rng.standard_normal(len(T)).astype(np.float32)
    quiet, loud = prosody(voice * 0.1), prosody(voice)
    level = FEATURES.index("level_db")
    assert loud[level] - quiet[level] == pytest.approx(20.0, abs=0.1)
    others = [i for i in range(len(FEATURES)) if i != level]
    assert loud[others] == pytest.approx(quiet[others], rel=1e-3, abs=1e-3)


def test_a_rising_glide_has_range_and_slope() -> None:
    glide = prosody(harmonic(np.linspace(120, 240, len(T))))
    assert feature(glide, "f0_range_st") > 8  # an octave is 12 semitones; p10 to p90 is most of it
    assert feature(glide, "f0_slope_st_s") == pytest.approx(12.0, abs=1.5)
    assert feature(prosody(harmonic(150.0)), "f0_range_st") < 0.5


def test_int16_and_float_input_agree_and_silence_gives_numbers() -> None:
    voice = harmonic(200.0) + 0.01 * np.random.default_rng(1).standard_normal(len(T)).astype(np.float32)
    assert prosody((voice * 32768).astype(np.int16)) == pytest.approx(prosody(voice), rel=1e-2, abs=1e-2)
    assert np.isfinite(prosody(np.zeros(8000, dtype=np.float32))).all()
    assert np.isfinite(prosody(np.zeros(100, dtype=np.float32))).all()
