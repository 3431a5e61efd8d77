"""The voice head: pooling over the speech frames, the heads' arithmetic, the shipped head's leave-one-corpus-out
figures, and that it is used only with the encoder it was fitted on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import ACOUSTIC_MODEL_DIR
from processors.prosody import FEATURES
from processors.transcriber import Transcriber, TranscriberOptions
from processors.voice_head import EMOTIONS, HEADS, POLARITY, VoiceHead, VoiceSessions, pool_states
from producers.audio import load_pcm16

DATA = Path(__file__).parent / "data"


def test_pooling_covers_the_speech_frames_only() -> None:
    states = np.arange(100, dtype=np.float32)[:, None].repeat(2, axis=1)  # frame i holds i
    pooled = pool_states(states, start_s=0.2, duration_s=0.1)  # 50 frames a second: frames 10-14
    assert pooled.tolist() == pytest.approx([12, 12, np.std([10, 11, 12, 13, 14]), np.std([10, 11, 12, 13, 14])])
    assert pool_states(states, 1.9, 5.0)[0] == pytest.approx(97)  # speech past the window end: frames 95-99
    assert pool_states(states, 0.0, 0.0)[0] == 0  # never empty: at least one frame


def test_the_heads_are_softmaxes_and_a_logistic_over_standardised_features() -> None:
    head = VoiceHead.load()
    assert set(head.heads) == set(HEADS) and head.inputs == "both" and head.population is not None
    features = np.random.default_rng(0).normal(size=head.population.shape).astype(np.float32)
    inputs = np.concatenate((features, features - head.population))  # a session's first utterance
    polarity = head.heads["polarity"]
    logits = polarity.coef @ ((inputs - polarity.mean) / polarity.scale) + polarity.intercept
    verdict = head.read(features)
    assert list(verdict.polarity) == list(POLARITY) and list(verdict.emotion) == list(EMOTIONS)
    assert list(verdict.polarity.values()) == pytest.approx((np.exp(logits) / np.exp(logits).sum()).tolist(), abs=1e-6)
    assert sum(verdict.emotion.values()) == pytest.approx(1.0, abs=1e-6)
    arousal = head.heads["arousal"]
    logit = float((arousal.coef @ ((inputs - arousal.mean) / arousal.scale) + arousal.intercept)[0])
    assert verdict.arousal == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    assert head.heads["window_arousal"].mean.shape == (len(FEATURES),)


def test_a_session_reads_each_utterance_against_the_speakers_earlier_ones() -> None:
    head = VoiceHead.load()
    assert head.population is not None
    usual = head.population + 0.5 * np.random.default_rng(2).normal(size=head.population.shape).astype(np.float32)
    baseline = head.baseline()
    assert baseline is not None and baseline.mean() == pytest.approx(head.population)
    first = head.read(usual, baseline, seq=0)
    assert first == head.read(usual)  # a session's first utterance departs from the population
    for seq in range(1, 30):
        head.read(usual, baseline, seq=seq)
    assert baseline.count == 30
    head.read(usual, baseline, seq=29)  # a replayed utterance does not count twice
    assert baseline.count == 30
    # the baseline is now this speaker's: the same voice departs from it by (almost) nothing
    settled = head.inputs_of(usual, baseline)[len(usual) :]
    assert np.abs(settled).max() < 0.1 * np.abs(usual - head.population).max()


def test_sessions_are_kept_apart_and_the_least_recent_forgotten() -> None:
    head = VoiceHead.load()
    sessions = VoiceSessions(capacity=2)
    a, b = sessions.baseline("a", head), sessions.baseline("b", head)
    assert a is not None and b is not None and a is not b and sessions.baseline("a", head) is a
    sessions.baseline("c", head)  # "b" was heard least recently
    assert len(sessions) == 2 and sessions.baseline("b", head) is not b
    assert VoiceSessions().baseline("a", None) is None


def test_a_saved_head_loads_back_the_same(tmp_path: Path) -> None:
    head = VoiceHead.load()
    (tmp_path / "head.json").write_text(head.to_json())
    again = VoiceHead.load(tmp_path / "head.json")
    assert head.population is not None
    features = np.random.default_rng(1).normal(size=head.population.shape).astype(np.float32)
    assert again.version == head.version and again.inputs == head.inputs
    assert again.read(features).emotion == pytest.approx(head.read(features).emotion, abs=1e-5)


def test_shipped_head_reports_leave_one_corpus_out_figures() -> None:
    """What `train_voice_head.py --loco` measured on corpora each fold never saw, beside the head it fitted."""
    metrics = json.loads((ACOUSTIC_MODEL_DIR / "voice_head_metrics.json").read_text())
    assert metrics["head"] == VoiceHead.load().version
    folds = metrics["folds"]
    assert {"ravdess", "turev", "baved", "calm_speech"} <= set(folds)
    assert all(folds[c][c]["arousal_auc"] >= 0.75 for c in ("ravdess", "turev", "baved"))  # each speaker a session
    assert all(folds[c][f"clip:{c}"]["arousal_auc"] >= 0.75 for c in ("ravdess", "turev", "baved"))  # clip by clip
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
