"""Channel augmentation for the voice model: what real calls do to speech. Training only; numpy and PyAV.

Each function takes float32 16 kHz mono audio in −1…1 and returns the same. `channel` draws one random chain:
speed/pitch, codec (G.711 μ-law, GSM, G.722) or telephone band, reverberation, noise at 5–30 dB SNR, gain ±12 dB.
G.722 runs through PyAV's encoder and decoder, GSM 06.10 through sox (PyAV's wheel has no GSM encoder): the codecs
a phone line or PBX uses. Needs sox (`apt-get install sox`).
"""

from __future__ import annotations

import subprocess

import numpy as np

RATE = 16_000


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Speed and pitch together, by resampling (factor > 1 is faster and higher)."""
    positions = np.arange(0, len(audio) - 1, factor)
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)


def band_limit(audio: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """Brick-wall band-pass in the frequency domain (a telephone line passes about 300–3400 Hz)."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spectrum, n=len(audio)).astype(np.float32)


def mu_law(audio: np.ndarray) -> np.ndarray:
    """G.711 μ-law at 8 kHz: band-limit to 4 kHz, compand to 8 bits and back."""
    narrow = band_limit(audio, 0, 3800)
    mu = 255.0
    coded = np.sign(narrow) * np.log1p(mu * np.abs(np.clip(narrow, -1, 1))) / np.log1p(mu)
    coded = np.round(coded * 127) / 127
    return (np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu).astype(np.float32)


def gsm(audio: np.ndarray) -> np.ndarray:
    """GSM 06.10 full rate at 8 kHz, encoded and decoded by sox."""
    raw16 = ["-t", "raw", "-r", str(RATE), "-e", "signed", "-b", "16", "-c", "1"]
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    coded = subprocess.run(["sox", *raw16, "-", "-r", "8000", "-t", "gsm", "-"], input=pcm, capture_output=True,
                           check=True).stdout  # fmt: skip
    decoded = subprocess.run(["sox", "-t", "gsm", "-r", "8000", "-c", "1", "-", *raw16, "-"], input=coded,
                             capture_output=True, check=True).stdout  # fmt: skip
    result = np.frombuffer(decoded, dtype="<i2").astype(np.float32) / 32768
    return np.pad(result, (0, max(0, len(audio) - len(result))))[: len(audio)]


def codec(audio: np.ndarray, name: str, rate: int) -> np.ndarray:
    """Encode and decode with PyAV's codec `name` at `rate` Hz (e.g. "g722" at 16000)."""
    import av

    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    encoder = av.CodecContext.create(name, "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", "s16"
    decoder = av.CodecContext.create(name, "r")
    decoder.sample_rate, decoder.layout = rate, "mono"
    down = av.AudioResampler(format="s16", layout="mono", rate=rate)
    up = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frames = [*down.resample(frame), *down.resample(None)]
    decoded = []
    for f in [*frames, None]:
        for packet in encoder.encode(f):
            for out in decoder.decode(packet):
                decoded.extend(up.resample(out))
    decoded.extend(up.resample(None))
    result = np.concatenate([d.to_ndarray().reshape(-1) for d in decoded]).astype(np.float32) / 32768
    return np.pad(result, (0, max(0, len(audio) - len(result))))[: len(audio)]


def reverberate(audio: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response: exponentially decaying noise with the given RT60."""
    length = int(rt60_s * RATE)
    t = np.arange(length) / RATE
    response = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)
    response[0] = 1.0
    response /= np.sqrt(np.sum(response**2))
    wet = np.fft.irfft(np.fft.rfft(audio, len(audio) + length) * np.fft.rfft(response, len(audio) + length))
    return wet[: len(audio)].astype(np.float32)


def add_noise(
    audio: np.ndarray, snr_db: float, rng: np.random.Generator, noise: np.ndarray | None = None
) -> np.ndarray:
    """Noise at `snr_db` against the speech's power: `noise` if given (babble), else white or pink."""
    if noise is None:
        noise = rng.standard_normal(len(audio)).astype(np.float32)
        if rng.random() < 0.5:  # pink: 1/f power
            spectrum = np.fft.rfft(noise)
            spectrum /= np.sqrt(np.maximum(1.0, np.arange(len(spectrum))))
            noise = np.fft.irfft(spectrum, n=len(audio)).astype(np.float32)
    noise = np.resize(noise, len(audio))
    power = float(np.mean(audio**2)) + 1e-10
    noise_power = float(np.mean(noise**2)) + 1e-10
    return (audio + noise * np.sqrt(power / noise_power / 10 ** (snr_db / 10))).astype(np.float32)


def channel(audio: np.ndarray, rng: np.random.Generator, babble: np.ndarray | None = None) -> np.ndarray:
    """One random channel: each step is taken with its own probability, so clean audio stays common too."""
    audio = speed(audio, rng.uniform(0.9, 1.1))
    line = rng.random()
    if line < 0.15:
        audio = mu_law(audio)
    elif line < 0.25:
        audio = gsm(audio)
    elif line < 0.35:
        audio = codec(audio, "g722", RATE)
    elif line < 0.5:
        audio = band_limit(audio, 300, 3400)
    if rng.random() < 0.3:
        audio = reverberate(audio, rng.uniform(0.15, 0.8), rng)
    if rng.random() < 0.6:
        use_babble = babble is not None and rng.random() < 0.3
        audio = add_noise(audio, rng.uniform(5, 30), rng, babble if use_babble else None)
    audio = audio * 10 ** (rng.uniform(-12, 12) / 20)
    return np.clip(audio, -1, 1).astype(np.float32)
