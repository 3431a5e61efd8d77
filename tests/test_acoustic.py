"""Acoustic emotion: the shipped graph's features equal the MFCC definition, and the classifier on real audio."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from moodstream.models import ACOUSTIC_MODEL_DIR
from moodstream.processors.acoustic import AcousticClassifier
from moodstream.producers.audio import load_pcm16

MODEL = ACOUSTIC_MODEL_DIR / "model.onnx"
SPEECH = np.frombuffer(load_pcm16(Path(__file__).parent / "data" / "three_prompts.wav"), dtype="<i2")


def reference_mfcc(
    audio: np.ndarray, n_mfcc: int = 40, n_mels: int = 64, n_fft: int = 400, hop: int = 160
) -> np.ndarray:
    """torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=40, log_mels=False, melkwargs={n_fft: 400, hop_length:
    160, n_mels: 64, mel_scale: "htk", norm: None, center: True, pad_mode: "reflect", power: 2}), written
    independently in numpy (float64) from its definition."""
    padded = np.pad(audio.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[i : i + n_fft] * window for i in range(0, len(padded) - n_fft + 1, hop)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    points = hz(np.linspace(mel(0.0), mel(8000.0), n_mels + 2))
    freqs = np.linspace(0, 8000, n_fft // 2 + 1)
    bank = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        left, centre, right = points[m : m + 3]
        bank[:, m] = np.maximum(0, np.minimum((freqs - left) / (centre - left), (right - freqs) / (right - centre)))
    db = 10 * np.log10(np.maximum(power @ bank, 1e-10))
    db = np.maximum(db, db.max() - 80)
    k = np.arange(n_mfcc)[:, None]
    dct = np.cos(math.pi / n_mels * (np.arange(n_mels) + 0.5) * k) * math.sqrt(2 / n_mels)
    dct[0] /= math.sqrt(2)
    return dct @ db.T  # [n_mfcc, frames]


def test_graph_features_equal_the_mfcc_definition() -> None:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    audio = SPEECH[16000 * 3 : 16000 * 5].astype(np.float32) / 32768  # 2 s of real speech
    (mfcc,) = session.run(["mfcc"], {"audio": audio[None]})
    reference = reference_mfcc(audio)
    assert mfcc[0].shape == reference.shape == (40, 201)
    assert np.abs(mfcc[0] - reference).max() < 1e-3 * np.abs(reference).max()


def test_windows_of_any_length_get_distributions() -> None:
    classifier = AcousticClassifier()
    for samples in (0, 800, 8000, 48000):
        result = classifier.classify(SPEECH[16000 * 3 : 16000 * 3 + samples].tobytes())
        assert sum(result.sentiment.values()) == pytest.approx(1.0, abs=1e-4)
        assert sum(result.emotions.values()) == pytest.approx(1.0, abs=1e-4)
        assert set(result.sentiment) == {"negative", "neutral", "positive"} and len(result.emotions) == 8
        assert result.arousal is not None and 0.0 <= result.arousal <= 1.0


def test_shipped_model_matches_its_checksum_and_reported_uar() -> None:
    import json

    sums = [line.split() for line in (ACOUSTIC_MODEL_DIR / "SHA256SUMS").read_text().splitlines()]
    assert {name for _digest, name in sums} == {"model.onnx", "voice_head.json"}
    for digest, name in sums:
        assert hashlib.sha256((ACOUSTIC_MODEL_DIR / name).read_bytes()).hexdigest() == digest, name
    metrics = json.loads((ACOUSTIC_MODEL_DIR / "metrics.json").read_text())
    assert metrics["ravdess_held_out_actors"]["uar"] >= 0.60
    assert set(metrics["held_out_actors"]).isdisjoint(range(1, 17))
    calm = [v for k, v in metrics.items() if k.startswith(("calm_", "voice_"))]
    assert calm and all(v["shares"]["neutral"] >= 0.7 for v in calm)  # held-out calm voices read as calm


def test_calm_telephone_prompts_read_as_calm() -> None:
    """The three prompts are spoken by a calm professional voice (Allison, one of the training voices, so this guards
    against regressions; held-out voices are judged by `bench sentiment`): each whole prompt reads as neutral."""
    import json

    truth = json.loads((Path(__file__).parent / "data" / "three_prompts.json").read_text())
    classifier = AcousticClassifier()
    for prompt in truth:
        start_ms, end_ms = prompt["speech_ms"]
        result = classifier.classify(SPEECH[start_ms * 16 : end_ms * 16])
        assert max(result.sentiment, key=result.sentiment.__getitem__) == "neutral", (prompt, result.sentiment)


def test_valence_shift_moves_mass_between_the_poles_only() -> None:
    from moodstream.models.acoustic.calibrate import shift_valence

    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.0, 1.0, 0.0]])
    shifted = shift_valence(probs, 0.7)
    np.testing.assert_allclose(shifted[:, 1], probs[:, 1])  # neutral, hence the voice commitment, untouched
    np.testing.assert_allclose(shifted.sum(axis=1), 1.0)
    assert shifted[0, 2] / shifted[0, 0] == pytest.approx(math.exp(0.7) * 0.2 / 0.5)
    np.testing.assert_allclose(shift_valence(probs, 0.0), probs)


def test_valence_shift_in_the_graph_equals_its_definition(tmp_path: Path) -> None:
    """The shift baked into a model (`calibrate.apply`) gives what `shift_valence` gives on the model's own output."""
    from moodstream.models.acoustic.calibrate import SHIFT_KEY, apply, shift_valence

    shifted_path = apply(MODEL, -0.4, tmp_path)
    twice_path = apply(shifted_path, 0.3, tmp_path / "twice")
    before, after = ort.InferenceSession(str(MODEL)), ort.InferenceSession(str(shifted_path))
    already = float(before.get_modelmeta().custom_metadata_map.get(SHIFT_KEY, "0"))
    audio = (SPEECH[: 16000 * 3].astype(np.float32) / 32768).reshape(3, 16000)
    raw = before.run(["sentiment"], {"audio": audio})[0]
    np.testing.assert_allclose(after.run(["sentiment"], {"audio": audio})[0], shift_valence(raw, -0.4), atol=1e-6)
    assert float(after.get_modelmeta().custom_metadata_map[SHIFT_KEY]) == pytest.approx(already - 0.4)
    twice = ort.InferenceSession(str(twice_path)).run(["sentiment"], {"audio": audio})[0]
    np.testing.assert_allclose(twice, shift_valence(raw, -0.1), atol=1e-6)  # shifts compose to their sum
