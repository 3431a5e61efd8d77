"""How an utterance is spoken, in numbers that do not depend on its language or words: pitch level, range and
movement, loudness contour, vocal effort (spectral tilt), periodicity and tempo. Pure numpy, no Kafka.

These are the cues that carry arousal across languages (an agitated voice is higher, wider in pitch, louder for its
speaker, and tilts its spectrum towards the highs); the voice head (`processors.voice_head`) reads them beside the
ASR encoder's states. Every feature is a ratio or a contour statistic, so a microphone's gain moves none but
`level_db`.

Frames of 32 ms every 20 ms. Pitch by YIN on the audio halved to 8 kHz (60–400 Hz); a frame is voiced when its
periodicity (1 − YIN's aperiodicity) reaches `VOICED_PEAK` and its energy is within `ACTIVE_DB` of the utterance's
loudest frame. The spectral features read only the band below `TELEPHONE_HZ`.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FRAME = 512
HOP = 320
MIN_F0, MAX_F0 = 60.0, 400.0
VOICED_PEAK = 0.75
"""Periodicity at or above which an active frame counts as voiced."""
YIN_THRESHOLD = 0.15
TELEPHONE_HZ = 3400.0
"""Spectral features read the band a telephone line passes, so a call and a wideband recording compare."""
ACTIVE_DB = 35.0
"""Frames quieter than the loudest by more than this are pauses, left out of every statistic."""

FEATURES = (
    "f0_mean_st", "f0_std_st", "f0_p10_st", "f0_p90_st", "f0_range_st", "f0_slope_st_s", "f0_jump_st",
    "voiced_share", "periodicity",
    "level_db", "level_std_db", "level_range_db", "level_jump_db",
    "centroid_hz", "centroid_std_hz", "alpha_ratio_db", "hammarberg_db", "flatness",
    "zero_crossings", "onsets_per_s", "active_share",
)  # fmt: skip
"""Feature names in vector order (st: semitones re 100 Hz; db: decibels)."""


PITCH_RATE = SAMPLE_RATE // 2
"""The pitch is tracked at 8 kHz: a quarter of the work, and 60-400 Hz needs no more."""


def _frames(audio: np.ndarray, frame: int = FRAME, hop: int = HOP) -> np.ndarray:
    if len(audio) < frame:
        audio = np.pad(audio, (0, frame - len(audio)))
    count = 1 + (len(audio) - frame) // hop
    index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    return audio[index]


def _half_rate(audio: np.ndarray) -> np.ndarray:
    """16 → 8 kHz: a [1, 2, 1]/4 low-pass, then every other sample."""
    padded = np.pad(audio, 1, mode="edge")
    return (0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:])[::2]


def _pitch(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # frames at PITCH_RATE
    """Per frame: F0 in Hz and periodicity (1 − YIN's aperiodicity at the chosen lag, 0…1), by YIN (de Cheveigné &
    Kawahara 2002): the cumulative-mean-normalised difference function, its first dip under `YIN_THRESHOLD` (else
    its lowest point), refined by a parabola."""
    size = frames.shape[1]
    low, high = int(PITCH_RATE / MAX_F0), int(PITCH_RATE / MIN_F0)
    padded = 400 if size + high + 2 <= 400 else 2 * size  # ≥ size + lags: no wrap-around; 400 = 2⁴·5² is quick
    acf = np.fft.irfft(np.abs(np.fft.rfft(frames, n=padded, axis=1)) ** 2, axis=1)[:, : high + 2]
    squares = np.cumsum(frames**2, axis=1)
    lags = np.arange(high + 2)
    head = squares[:, size - 1 - lags]  # Σ x_j² for j < size − τ
    tail = squares[:, -1:] - np.concatenate((np.zeros((len(frames), 1)), squares[:, lags[1:] - 1]), axis=1)
    difference = np.maximum(head + tail - 2 * acf, 0.0)
    running = np.cumsum(difference[:, 1:], axis=1) / lags[1:][None, :]
    normalised = np.ones_like(difference)
    normalised[:, 1:] = difference[:, 1:] / np.maximum(running, 1e-12)
    band = normalised[:, low : high + 1]
    under = band < YIN_THRESHOLD
    first = np.where(under.any(axis=1), under.argmax(axis=1), band.argmin(axis=1))
    rows = np.arange(len(band))
    while True:  # walk down to the bottom of the dip the first crossing fell into
        step = (first + 1 < band.shape[1]) & (band[rows, np.minimum(first + 1, band.shape[1] - 1)] < band[rows, first])
        if not step.any():
            break
        first = first + step
    left = band[rows, np.maximum(first - 1, 0)]
    right = band[rows, np.minimum(first + 1, band.shape[1] - 1)]
    bottom = band[rows, first]
    curvature = left - 2 * bottom + right
    shift = np.where(curvature > 1e-9, 0.5 * (left - right) / np.where(curvature > 1e-9, curvature, 1.0), 0.0)
    lag = low + first + np.clip(shift, -0.5, 0.5)
    return PITCH_RATE / lag, np.clip(1.0 - bottom, 0.0, 1.0)


def _band_db(power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return 10 * np.log10(power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) + 1e-12)


def _spectral(power: np.ndarray) -> dict[str, np.ndarray]:
    """Tilt and shape of each frame's spectrum below `TELEPHONE_HZ` only, so wideband audio and an 8 kHz call read
    alike."""
    freqs = np.fft.rfftfreq(FRAME, 1 / SAMPLE_RATE)
    band = power[:, (freqs >= 50) & (freqs < TELEPHONE_HZ)]
    band_freqs = freqs[(freqs >= 50) & (freqs < TELEPHONE_HZ)]
    low_peak = 10 * np.log10(band[:, band_freqs < 2000].max(axis=1) + 1e-12)
    high_peak = 10 * np.log10(band[:, band_freqs >= 2000].max(axis=1) + 1e-12)
    return {
        "centroid": (band * band_freqs[None, :]).sum(axis=1) / (band.sum(axis=1) + 1e-12),
        "alpha": _band_db(power, freqs, 1000, TELEPHONE_HZ) - _band_db(power, freqs, 50, 1000),
        "hammarberg": low_peak - high_peak,
        "flatness": np.exp(np.log(band + 1e-12).mean(axis=1)) / (band.mean(axis=1) + 1e-12),
    }


def _stats(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, standard deviation, 10th and 90th percentile (zeros for no values)."""
    if not len(values):
        return 0.0, 0.0, 0.0, 0.0
    p10, p90 = np.percentile(values, [10, 90])
    return float(values.mean()), float(values.std()), float(p10), float(p90)


def _onset_rate(level: np.ndarray, seconds: float) -> float:
    """Rises of the smoothed loudness contour by ≥ 3 dB from a dip: a syllable-rate proxy, per second."""
    smooth = np.convolve(np.pad(level, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    count, floor = 0, smooth[0] if len(smooth) else 0.0
    for value in smooth:
        if value < floor:
            floor = value
        elif value - floor >= 3.0:
            count, floor = count + 1, value
    return count / max(seconds, 1e-3)


def _pitch_features(f0: np.ndarray, voiced: np.ndarray, periodicity: np.ndarray, active: np.ndarray) -> list[float]:
    semitones = 12 * np.log2(f0[voiced] / 100.0)
    mean, std, p10, p90 = _stats(semitones)
    slope = float(np.polyfit(np.flatnonzero(voiced) * HOP / SAMPLE_RATE, semitones, 1)[0]) if voiced.sum() > 2 else 0.0
    steps = np.diff(12 * np.log2(f0 / 100.0))[voiced[1:] & voiced[:-1]]
    jump = float(np.abs(steps).mean()) if len(steps) else 0.0
    share = float(voiced.sum() / max(active.sum(), 1))
    return [mean, std, p10, p90, p90 - p10, slope, jump, share, float(periodicity[active].mean())]


def prosody(audio: np.ndarray) -> np.ndarray:
    """The `FEATURES` of one utterance (float32 or int16 16 kHz mono; the whole utterance or a 500 ms window)."""
    samples = audio.astype(np.float32) / (32768.0 if audio.dtype == np.int16 else 1.0)
    frames = _frames(samples)
    frames = frames - frames.mean(axis=1, keepdims=True)
    windowed = frames * np.hanning(FRAME).astype(np.float32)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-10)
    active = level > level.max() - ACTIVE_DB
    narrow = _frames(_half_rate(samples), FRAME // 2, HOP // 2)
    f0, periodicity = _pitch(narrow - narrow.mean(axis=1, keepdims=True))
    f0, periodicity = np.resize(f0, len(frames)), np.resize(periodicity, len(frames))  # same count save rounding
    voiced = active & (periodicity >= VOICED_PEAK)
    chosen = voiced if voiced.any() else active
    spectral = _spectral(np.abs(np.fft.rfft(windowed[chosen], axis=1)) ** 2)
    lv_mean, lv_std, lv_p10, lv_p90 = _stats(level[active])
    seconds = len(samples) / SAMPLE_RATE
    both = min(len(narrow), len(frames))
    signs = np.signbit(narrow[:both][active[:both]])  # at 8 kHz: a call's band, as the spectrum
    crossings = float((signs[:, 1:] != signs[:, :-1]).mean()) if len(signs) else 0.0
    return np.array(
        [
            *_pitch_features(f0, voiced, periodicity, active),
            lv_mean, lv_std, lv_p90 - lv_p10, float(np.abs(np.diff(level[active])).mean()) if active.sum() > 1 else 0.0,
            *_stats(spectral["centroid"])[:2], float(spectral["alpha"].mean()), float(spectral["hammarberg"].mean()),
            float(spectral["flatness"].mean()),
            crossings, _onset_rate(level[active], seconds), float(active.mean()),
        ],
        dtype=np.float32,
    )  # fmt: skip
