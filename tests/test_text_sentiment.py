"""Text sentiment: the shipped int8 model on tokenizers + onnxruntime, torch-free, and its Faust stage."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from moodstream.models import TEXT_MODEL_DIR
from moodstream.processors.text_reader import TextReader
from moodstream.processors.text_sentiment import NO_TEXT, TextClassifier, TextSentimentOptions
from moodstream.producers.audio import load_pcm16
from moodstream.schemas import encode
from moodstream.schemas.records import PartialTranscript, TextScore, Transcript, Utterance
from moodstream.schemas.topics import TEXT_SCORES, UTTERANCES
from tests.conftest import Stack, read_session_records

DATA = Path(__file__).parent / "data"


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
        "import moodstream.gateway.app, moodstream.processors.stages.worker\n"
        "from moodstream.processors.text_sentiment import TextClassifier\n"
        "from moodstream.processors.acoustic import AcousticClassifier\n"
        "from moodstream.processors.transcriber import Transcriber\n"
        "from moodstream.processors.vad import load_silero\n"
        "TextClassifier().classify(['fine']); load_silero(); AcousticClassifier().classify(bytes(16000))\n"
        "Transcriber().transcribe(bytes(32000))\n"
        "bad = [m for m in ('torch', 'transformers', 'optimum', 'torchaudio') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_reader_reads_each_utterance_after_the_sessions_previous_one(classifier: TextClassifier) -> None:
    reader = TextReader(lambda: classifier)

    def transcript(seq: int, text: str, rejected: bool = False) -> Transcript:
        return Transcript(session_id="s", utterance_seq=seq, start_ms=0, end_ms=1000, text=text, rejected=rejected,
                          model_id="test", compute_ms=1, last_frame_received_at_ms=0)  # fmt: skip

    happy = reader.score(transcript(0, "I am so happy with this!"))
    assert happy.has_text and happy.label == "positive" and happy.model_version == classifier.version
    assert reader.memory.context("s", 1) == "I am so happy with this!"
    rejected = reader.score(transcript(1, "thanks for watching", rejected=True))
    assert not rejected.has_text and rejected.text == "" and rejected.label == "neutral"
    assert reader.memory.context("s", 2) == "I am so happy with this!"  # a rejected transcript is no context
    partial = PartialTranscript(session_id="s", utterance_seq=2, revision=1, start_ms=0, end_ms=500,
                                text="this is awful", model_id="test", compute_ms=1)  # fmt: skip
    assert reader.score_partial(partial).text_sentiment.negative > 0.5
    assert reader.memory.context("s", 3) == "I am so happy with this!"  # nor is a partial


async def test_the_asr_stage_reads_the_words_it_made(stack: Stack) -> None:
    session = f"text-{time.time_ns()}"
    producer = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    speech = load_pcm16(DATA / "three_prompts.wav")[400 * 32 : 1700 * 32]  # 0.4-1.7 s: "Goodbye"
    for seq, gated in enumerate([None, "too_short"]):
        utterance = Utterance(session_id=session, utterance_seq=seq, start_ms=0, end_ms=1300, end_reason="silence",
                              pcm_start_ms=0, gated=gated, last_frame_received_at_ms=0, pcm=speech)  # fmt: skip
        producer.produce(UTTERANCES.name, key=session.encode(), value=encode(utterance))
    producer.flush(10)
    deadline = time.monotonic() + 30
    scores: list[TextScore] = []
    while len(scores) < 2 and time.monotonic() < deadline:
        scores = await asyncio.to_thread(read_session_records, stack.bootstrap, TEXT_SCORES, session, (TextScore,))
    by_seq = {s.utterance_seq: s for s in scores}
    assert by_seq[0].has_text and by_seq[0].text == "Goodbye." and by_seq[0].asr_model.startswith("whisper")
    assert not by_seq[1].has_text and by_seq[1].text == ""  # gated: never decoded, so no words
