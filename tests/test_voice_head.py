"""The voice read from the ASR encoder: pooling over the speech frames, the head's arithmetic, and that it is used only
with the encoder it was fitted on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import ACOUSTIC_MODEL_DIR
from processors.transcriber import Transcriber, TranscriberOptions
from processors.voice_head import EncoderVoiceHead, pool_states
from producers.audio import load_pcm16

DATA = Path(__file__).parent / "data"


def test_pooling_covers_the_speech_frames_only() -> None:
    states = np.arange(100, dtype=np.float32)[:, None].repeat(2, axis=1)  # frame i holds i
    pooled = pool_states(states, start_s=0.2, duration_s=0.1)  # 50 frames a second: frames 10-14
    assert pooled.tolist() == pytest.approx([12, 12, np.std([10, 11, 12, 13, 14]), np.std([10, 11, 12, 13, 14])])
    assert pool_states(states, 1.9, 5.0)[0] == pytest.approx(97)  # speech past the window end: frames 95-99
    assert pool_states(states, 0.0, 0.0)[0] == 0  # never empty: at least one frame


def test_the_head_is_a_softmax_over_standardised_features() -> None:
    head = EncoderVoiceHead.load()
    features = np.random.default_rng(0).normal(size=head.mean.shape).astype(np.float32)
    logits = head.coef @ ((features - head.mean) / head.scale) + head.intercept
    expected = np.exp(logits) / np.exp(logits).sum()
    result = head.sentiment(features)
    assert list(result) == ["negative", "neutral", "positive"]
    assert list(result.values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_shipped_head_reports_held_out_figures() -> None:
    """What `train_encoder_head.py` measured on speakers it never saw, beside the head it fitted."""
    metrics = json.loads((ACOUSTIC_MODEL_DIR / "encoder_head_metrics.json").read_text())
    assert metrics["ravdess_held_out_actors"]["uar"] >= 0.7 and metrics["ravdess_held_out_actors"]["speakers"] == 4
    calm = [v for k, v in metrics.items() if k.startswith(("calm_", "voice_"))]
    assert len(calm) >= 5 and all(v["shares"]["neutral"] >= 0.9 for v in calm)


def test_a_calm_reader_is_heard_as_neutral_by_the_encoder_head() -> None:
    transcriber = Transcriber()
    assert transcriber.voice_head is not None and transcriber.voice_head.encoder == transcriber.model_id
    result = transcriber.transcribe(load_pcm16(DATA / "read_sentence.wav"))
    assert result.voice_sentiment is not None
    assert sum(result.voice_sentiment.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(result.voice_sentiment, key=result.voice_sentiment.__getitem__) == "neutral"


def test_another_encoder_gets_no_head() -> None:
    """The head's weights mean something only for the encoder they were fitted on (here: another compute type)."""
    transcriber = Transcriber(TranscriberOptions(compute_type="float32"))
    assert transcriber.voice_head is None
    assert transcriber.transcribe(load_pcm16(DATA / "three_prompts.wav")[: 32000 * 2]).voice_sentiment is None
