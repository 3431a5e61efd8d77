"""The voice head: pooling over the speech frames, the heads' arithmetic, the shipped head's leave-one-corpus-out
figures, and that it is used only with the encoder it was fitted on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moodstream.models import ACOUSTIC_MODEL_DIR
from moodstream.models.acoustic.train_voice_head import fold
from moodstream.processors.prosody import FEATURES
from moodstream.processors.transcriber import Transcriber, TranscriberOptions
from moodstream.processors.voice_head import EMOTIONS, HEADS, POLARITY, LinearHead, VoiceHead, pool_states
from moodstream.producers.audio import load_pcm16

DATA = Path(__file__).parent / "data"


def test_pooling_covers_the_speech_frames_only() -> None:
    states = np.arange(100, dtype=np.float32)[:, None].repeat(2, axis=1)  # frame i holds i
    pooled = pool_states(states, start_s=0.2, duration_s=0.1)  # 50 frames a second: frames 10-14
    assert pooled.tolist() == pytest.approx([12, 12, np.std([10, 11, 12, 13, 14]), np.std([10, 11, 12, 13, 14])])
    assert pool_states(states, 1.9, 5.0)[0] == pytest.approx(97)  # speech past the window end: frames 95-99
    assert pool_states(states, 0.0, 0.0)[0] == 0  # never empty: at least one frame


def test_the_heads_are_softmaxes_and_a_logistic_over_standardised_features() -> None:
    head = VoiceHead.load()
    assert set(head.heads) == set(HEADS)
    features = np.random.default_rng(0).normal(size=head.heads["polarity"].mean.shape).astype(np.float32)
    polarity = head.heads["polarity"]
    logits = polarity.coef @ ((features - polarity.mean) / polarity.scale) + polarity.intercept
    verdict = head.read(features)
    assert list(verdict.polarity) == list(POLARITY) and list(verdict.emotion) == list(EMOTIONS)
    assert list(verdict.polarity.values()) == pytest.approx((np.exp(logits) / np.exp(logits).sum()).tolist(), abs=1e-6)
    assert sum(verdict.emotion.values()) == pytest.approx(1.0, abs=1e-6)
    arousal = head.heads["arousal"]
    logit = float((arousal.coef @ ((features - arousal.mean) / arousal.scale) + arousal.intercept)[0])
    assert verdict.arousal == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    assert verdict.head == head.version
    assert head.heads["window_arousal"].mean.shape == (len(FEATURES),)


def test_a_head_on_features_and_their_departure_folds_into_one_on_the_features() -> None:
    """What training fits (a head on [x, x − baseline]) and what is served (one on x) agree when the baseline is the
    population's mean."""
    rng = np.random.default_rng(3)
    population = rng.normal(size=5)
    both = LinearHead(rng.normal(size=10).astype(np.float32), rng.uniform(0.5, 2, 10).astype(np.float32),
                      rng.normal(size=(3, 10)).astype(np.float32), rng.normal(size=3).astype(np.float32))  # fmt: skip
    folded = fold(both, population)
    for x in rng.normal(size=(4, 5)):
        expected = both.probabilities(np.concatenate((x, x - population)).astype(np.float32))
        assert folded.probabilities(x.astype(np.float32)) == pytest.approx(expected, abs=1e-5)


def test_a_saved_head_loads_back_the_same(tmp_path: Path) -> None:
    head = VoiceHead.load()
    (tmp_path / "head.json").write_text(head.to_json())
    again = VoiceHead.load(tmp_path / "head.json")
    features = np.random.default_rng(1).normal(size=head.heads["emotion"].mean.shape).astype(np.float32)
    assert again.version == head.version
    assert again.read(features).emotion == pytest.approx(head.read(features).emotion, abs=1e-5)


def test_shipped_head_reports_leave_one_corpus_out_figures() -> None:
    """What `train_voice_head.py --loco` measured on corpora each fold never saw, beside the head it fitted."""
    metrics = json.loads((ACOUSTIC_MODEL_DIR / "voice_head_metrics.json").read_text())
    assert metrics["head"] == VoiceHead.load().version
    folds = metrics["folds"]
    assert {"ravdess", "turev", "baved", "calm_speech"} <= set(folds)
    assert all(folds[c][c]["arousal_auc"] >= 0.75 for c in ("ravdess", "turev", "baved"))
    calm = [
        fold[voice]["voice"]["shares"]["neutral"] for fold in folds.values() for voice in fold if "prompts" in voice
    ]
    assert len(calm) >= 9 and np.median(calm) >= 0.9


def test_a_calm_reader_is_heard_as_a_calm_voice() -> None:
    transcriber = Transcriber()
    assert transcriber.voice_head is not None and transcriber.voice_head.encoder == transcriber.model_id
    voice = transcriber.transcribe(load_pcm16(DATA / "read_sentence.wav")).voice
    assert voice is not None
    assert sum(voice.polarity.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(voice.polarity, key=voice.polarity.__getitem__) == "neutral"
    assert max(voice.emotion, key=voice.emotion.__getitem__) == "neutral"
    assert voice.arousal < 0.5


def test_another_encoder_gets_no_head() -> None:
    """The head's weights mean something only for the encoder they were fitted on (here: another compute type)."""
    transcriber = Transcriber(TranscriberOptions(compute_type="float32"))
    assert transcriber.voice_head is None
    assert transcriber.transcribe(load_pcm16(DATA / "three_prompts.wav")[: 32000 * 2]).voice is None
