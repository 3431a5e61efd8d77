"""Text sentiment: the shipped int8 model on tokenizers + onnxruntime, torch-free, and its Faust stage."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer

from models import TEXT_MODEL_DIR
from processors.text_sentiment import NO_TEXT, TextClassifier, TextSentimentOptions
from schemas import encode
from schemas.records import TextScore, Transcript
from schemas.topics import TEXT_SCORES, TRANSCRIPTS
from tests.conftest import Stack, read_session_records


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    return TextClassifier()


def test_clear_sentences_get_the_right_label(classifier: TextClassifier) -> None:
    texts = [
        "I love this, it is absolutely wonderful.",
        "This is the worst day of my life, I hate it.",
        "What a brilliant and moving performance.",
        "The service was terrible and the food was awful.",
    ]
    labels = [r.label for r in classifier.classify(texts)]
    assert labels == ["positive", "negative", "positive", "negative"]


def test_scores_are_distributions_and_batching_does_not_change_them(classifier: TextClassifier) -> None:
    texts = ["a fine film", "a dull, lifeless mess", "it was okay I guess", "the movie"]
    batched = classifier.classify(texts)
    single = [classifier.classify([t])[0] for t in texts]
    for a, b in zip(batched, single, strict=True):
        assert a.negative + a.neutral + a.positive == pytest.approx(1.0)
        # dynamic int8 picks activation scales per batch, so padding moves scores by up to a few 1e-2, not the label
        assert a.p_positive == pytest.approx(b.p_positive, abs=0.05)
        assert a.label == b.label


def test_blank_text_is_an_explicit_no_text(classifier: TextClassifier) -> None:
    assert classifier.classify(["", "   "]) == [NO_TEXT, NO_TEXT]
    assert NO_TEXT.has_text is False


def test_plain_statements_are_neutral_and_opinions_are_not(classifier: TextClassifier) -> None:
    # the binary SST-2 model called the first 0.93 negative and the second 0.92 positive
    statements = ["That agent is already logged on.", "Please enter your account number.", "The bus leaves at nine."]
    opinions = ["The service was terrible.", "What a lovely surprise, thank you so much!", "I hate waiting on hold."]
    assert [r.label for r in classifier.classify(statements)] == ["neutral"] * 3
    assert [r.label for r in classifier.classify(opinions)] == ["negative", "positive", "negative"]


def test_neutral_band_stands_in_for_a_binary_models_missing_class() -> None:
    wide = TextClassifier(TextSentimentOptions(neutral_band=1.0))
    assert wide._three_way(0.55).label == "neutral"
    assert wide._three_way(0.99).label == "positive"
    off = TextClassifier(TextSentimentOptions(neutral_band=0.0))
    assert off._three_way(0.55).neutral == 0.0


def test_shipped_files_match_their_checksums() -> None:
    for line in (TEXT_MODEL_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((TEXT_MODEL_DIR / name).read_bytes()).hexdigest() == digest, name


def test_serving_path_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import gateway.app, processors.worker\n"
        "from processors import audio_stage, acoustic_stage, asr_stage, text_stage, fusion_stage\n"
        "from processors.text_sentiment import TextClassifier\n"
        "from processors.acoustic import AcousticClassifier\n"
        "from processors.transcriber import Transcriber\n"
        "from processors.vad import load_silero\n"
        "TextClassifier().classify(['fine']); load_silero(); AcousticClassifier().classify(bytes(16000))\n"
        "Transcriber().transcribe(bytes(32000))\n"
        "bad = [m for m in ('torch', 'transformers', 'optimum', 'torchaudio') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_stage_scores_transcripts_from_the_topic(stack: Stack) -> None:
    session = f"text-{time.time_ns()}"
    producer = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    for seq, (text, rejected) in enumerate([("I am so happy with this!", False), ("", True)]):
        transcript = Transcript(
            session_id=session,
            utterance_seq=seq,
            start_ms=0,
            end_ms=1000,
            text=text,
            rejected=rejected,
            reject_reason="no_speech" if rejected else None,
            model_id="test",
            compute_ms=1,
            last_frame_received_at_ms=0,
        )
        producer.produce(TRANSCRIPTS.name, key=session.encode(), value=encode(transcript))
    producer.flush(10)
    deadline = time.monotonic() + 30
    scores: list[TextScore] = []
    while len(scores) < 2 and time.monotonic() < deadline:
        scores = await asyncio.to_thread(read_session_records, stack.bootstrap, TEXT_SCORES, session, (TextScore,))
    by_seq = {s.utterance_seq: s for s in scores}
    assert by_seq[0].has_text and by_seq[0].label == "positive"
    assert not by_seq[1].has_text and by_seq[1].text == ""
