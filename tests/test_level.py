"""The audio-level core, without a broker."""

from __future__ import annotations

import pytest

from moodstream.processors.level import LevelMeter
from tests.conftest import tone


def test_full_scale_sine_reads_minus_three_dbfs_per_window() -> None:
    meter = LevelMeter(window_ms=500)
    pcm = tone(1.0, 1.0)
    readings = [r for i in range(0, len(pcm), 640) for r in meter.feed(pcm[i : i + 640], i // 2)]
    assert [(r.start_ms, r.end_ms) for r in readings] == [(0.0, 500.0), (500.0, 1000.0)]
    for reading in readings:
        assert reading.rms_dbfs == pytest.approx(-3.01, abs=0.02)
        assert reading.peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert meter.flush() is None


def test_silence_is_the_floor_and_partial_window_flushes() -> None:
    meter = LevelMeter(window_ms=500)
    assert meter.feed(bytes(3200), 0) == []  # 100 ms of digital silence
    reading = meter.flush()
    assert reading is not None
    assert (reading.start_ms, reading.end_ms, reading.rms_dbfs) == (0.0, 100.0, -120.0)


def test_frames_that_straddle_windows_split_exactly() -> None:
    meter = LevelMeter(window_ms=20)  # 320 samples
    readings = meter.feed(tone(0.05, 0.5), 0)  # 800 samples: two whole windows, 160 pending
    assert [(r.start_ms, r.end_ms) for r in readings] == [(0.0, 20.0), (20.0, 40.0)]
    rest = meter.flush()
    assert rest is not None and (rest.start_ms, rest.end_ms) == (40.0, 50.0)


def test_a_meter_of_no_window_reads_nothing() -> None:
    meter = LevelMeter(0)
    assert meter.feed(tone(1.0, 0.5), 0) == [] and meter.flush() is None
