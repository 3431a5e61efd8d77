"""The Moonshine backend on real speech (exact transcripts) and on generated non-speech (no transcript), and the
backend setting that picks it."""

from __future__ import annotations

import pytest

from moodstream.models.asr.fetch_moonshine import check
from moodstream.processors.asr_backend import ASR_BACKENDS, load_asr
from moodstream.processors.moonshine import MODEL_DIR, MoonshineTranscriber
from moodstream.settings import Settings
from tests.test_transcriber import signals, utterance


@pytest.fixture(scope="module")
def moonshine() -> MoonshineTranscriber:
    transcriber = load_asr("moonshine-tiny")
    assert isinstance(transcriber, MoonshineTranscriber)
    return transcriber


def test_exact_transcripts_of_real_prompts(moonshine: MoonshineTranscriber) -> None:
    texts = [moonshine.transcribe(utterance(i)).text for i in range(3)]
    assert texts == [
        "Good-by,",
        "That agent is already logged on. Please enter your agent number followed by the pound key.",
        "There are currently,",
    ]
    assert moonshine.model_id == "moonshine-tiny:int8"


def test_a_partial_is_the_words_so_far(moonshine: MoonshineTranscriber) -> None:
    words = moonshine.transcribe_partial(utterance(1)[: 16_000 * 2 * 2]).text  # its first two seconds
    assert words.startswith("That agent"), words


@pytest.mark.parametrize("name", list(signals()))
def test_silence_noise_and_music_give_no_transcript(moonshine: MoonshineTranscriber, name: str) -> None:
    audio = (signals()[name] * 32767).astype("<i2").tobytes()
    result = moonshine.transcribe(audio)
    assert result.rejected and result.text == "", (name, result)


def test_the_backend_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().asr_backend == "whisper" and ASR_BACKENDS == ("whisper", "moonshine-tiny")
    monkeypatch.setenv("MOODSTREAM_ASR_BACKEND", "moonshine-tiny")
    assert Settings().asr_backend == "moonshine-tiny"
    monkeypatch.setenv("MOODSTREAM_ASR_BACKEND", "whisper-large")
    with pytest.raises(ValueError, match="asr_backend"):
        Settings()


def test_the_shipped_files_are_the_packaged_ones() -> None:
    assert check(MODEL_DIR, MODEL_DIR / "SHA256SUMS") == []  # models/asr/fetch_moonshine.py re-creates them
