"""ASR core on real speech (exact transcripts) and on generated non-speech (no transcript)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moodstream.cli.bench.wer import normalize, wer
from moodstream.processors.transcriber import Transcriber, TranscriberOptions, cut_at_self_repeat, is_looping
from moodstream.producers.audio import load_pcm16

DATA = Path(__file__).parent / "data"
PCM = np.frombuffer(load_pcm16(DATA / "three_prompts.wav"), dtype="<i2")
PROMPTS = json.loads((DATA / "three_prompts.json").read_text())
RATE = 16_000


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber()


@pytest.fixture(scope="module", params=["ctranslate2", "onnxruntime-decoder"])
def greedy_engine(request: pytest.FixtureRequest) -> Transcriber:
    """Each engine a greedy decode can run on, whichever this CPU's `auto` picks (CTranslate2 on Intel's)."""
    transcriber = Transcriber(TranscriberOptions(engine=request.param))
    assert transcriber.engine == request.param  # pinned, not `auto`'s choice for this CPU
    return transcriber


def utterance(index: int) -> bytes:
    start, end = PROMPTS[index]["speech_ms"]
    return PCM[(start - 200) * 16 : (end + 200) * 16].tobytes()  # the endpointer's 200 ms padding


def test_exact_transcripts_of_real_prompts(transcriber: Transcriber) -> None:
    texts = [transcriber.transcribe(utterance(i)).text for i in range(3)]
    assert texts == [
        "Goodbye!",
        "That agent is already logged on. Please enter your agent number followed by the pound key.",
        "There are currently.",
    ]


def test_short_utterances_use_a_short_window(transcriber: Transcriber) -> None:
    result = transcriber.transcribe(utterance(0))
    assert result.window_s < 30 and result.path in ("adaptive", "adaptive-cut")
    assert not result.rejected


def test_a_long_utterance_decodes_exactly_on_its_long_window(transcriber: Transcriber) -> None:
    """11.7 s of read speech as one utterance: the long window (3 s of silence, greedy) gives the exact sentence."""
    result = transcriber.transcribe(load_pcm16(DATA / "read_sentence.wav"))
    assert result.window_s == 15 > transcriber.options.short_window_s
    assert result.text == (
        "If the reader will excuse me, I will say nothing of my antecedents, nor of the circumstances which led me to"
        " leave my native country. The narrative would be tedious to him and painful to myself."
    )


def test_a_long_utterance_whose_decode_ends_after_its_first_sentence_is_transcribed_whole(
    transcriber: Transcriber,
) -> None:
    """13.7 s of one telephone prompt, cut by the endpointer at its longest utterance: Whisper without timestamps
    ends the text after the first of four sentences; the final goes on to faster-whisper's segments and keeps them."""
    pcm = load_pcm16(DATA / "long_prompt.wav")
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    window = transcriber._window_s(len(audio) / RATE)
    tokens, _, _ = transcriber._decode(transcriber._encode(audio, window), 200, beam_size=1)
    assert normalize(transcriber.tokenizer.decode(tokens)) == "thank you for calling super awesome company".split()
    for hurry in (False, True):
        result = transcriber.transcribe(pcm, hurry=hurry)
        assert result.path == "segments" and not result.rejected
        words = normalize(result.text)
        assert words[:6] == "thank you for calling super awesome".split()
        assert {"extension", "partnership", "dial"} <= set(words) and len(words) >= 30
        assert result.voice is not None  # the voice is still read from the adaptive window's encoder states


def test_a_partial_of_long_speech_goes_on_past_its_first_sentence(greedy_engine: Transcriber) -> None:
    """Live captions of the same prompt as it is spoken: the words so far of 11 s are its first three sentences,
    from the start or after settled words, not the first sentence again and again (on either engine)."""
    pcm = load_pcm16(DATA / "long_prompt.wav")[: 11 * RATE * 2]
    for settled in ("", "Thank you for calling Super Awesome Company."):
        words = normalize(greedy_engine.transcribe_partial(pcm, settled).text)
        assert words[:4] == ["thank", "you", "for", "calling"]
        assert {"products", "extension", "dial"} <= set(words), words


def test_a_decode_has_the_tokens_its_budget_allows(greedy_engine: Transcriber) -> None:
    """A budget counts tokens on either engine (CTranslate2's Whisper stops at half its `max_length`): 11.7 s of
    read speech runs to 42 tokens, so a budget of 30 ends it at 30, greedy or by beam, with or without a prefix."""
    audio = np.frombuffer(load_pcm16(DATA / "read_sentence.wav"), dtype="<i2").astype(np.float32) / 32768
    encoded = greedy_engine._encode(audio, 15)
    whole, _, _ = greedy_engine._decode(encoded, 100, 1)
    assert len(whole) > 40
    assert len(greedy_engine._decode(encoded, 30, 1)[0]) == 30
    assert len(greedy_engine._decode(encoded, 30, 1, whole[:10])[0]) == 20
    assert len(greedy_engine._decode(encoded, 30, 5)[0]) == 30  # beam search: in CTranslate2 on both engines


def test_a_looping_decode_stops_well_before_its_budget_on_either_engine(greedy_engine: Transcriber) -> None:
    """With no room after the speech this prompt loops ("There are currently. There are currently. …"): greedy or
    by beam, the decode stops by half its budget and one (onnxruntime's greedy decode after two periods), and the
    cut leaves the same words."""
    audio = np.frombuffer(utterance(2), dtype="<i2").astype(np.float32) / 32768
    encoded = greedy_engine._encode(audio, 2)
    for beam in (1, 5):
        tokens, _, _ = greedy_engine._decode(encoded, 60, beam)
        assert is_looping(tokens) and len(tokens) <= 60 // 2 + 1, (beam, len(tokens))
        words = normalize(greedy_engine.tokenizer.decode(cut_at_self_repeat(tokens) or []))
        assert words == ["there", "are", "currently"]


def test_long_silence_and_noise_are_rejected_without_the_segments_path(transcriber: Transcriber) -> None:
    """8 s of non-speech that got past the gate ends its decode at once, as speech cut short does, but is heard as no
    speech: it is rejected from its own decode, not sent down faster-whisper's dearer path."""
    rng = np.random.default_rng(0)
    for audio in (np.zeros(8 * RATE), rng.standard_normal(8 * RATE) * 0.05):
        result = transcriber.transcribe((audio * 32767).astype("<i2").tobytes())
        assert result.rejected and result.path != "segments", result


def test_the_floor_on_a_decodes_tokens_holds_only_where_it_hears_speech(transcriber: Transcriber) -> None:
    """Silence that a decode hears as no speech ends at once whatever the floor (nothing to make words up from)."""
    silence = transcriber._encode(np.zeros(8 * RATE, np.float32), 10)
    tokens, _, no_speech = transcriber._decode(silence, 90, 1, None, min_tokens=12)
    assert no_speech > transcriber.options.no_speech_threshold and len(tokens) <= 2


def test_a_short_utterance_is_never_taken_as_ended_early(transcriber: Transcriber) -> None:
    """A word with room around it is speech: only a decode of `early_end_min_s` or more can end early. "Goodbye!"
    in 3.5 s is under the 1.5 tokens a second that a longer utterance would be sent on for."""
    pcm = np.frombuffer(utterance(0), dtype="<i2")
    padded = np.concatenate([pcm, np.zeros(int(3.5 * RATE) - len(pcm), dtype="<i2")])
    assert transcriber.options.early_end_min_s > len(padded) / RATE
    result = transcriber.transcribe(padded.tobytes())
    assert result.path == "adaptive" and result.text == "Goodbye!"


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(3 * RATE) / RATE
    scale = np.repeat([262, 294, 330, 349, 392, 440, 494, 523], RATE * 3 // 8)[: 3 * RATE]
    return {
        "silence": np.zeros(3 * RATE),
        "white noise": rng.standard_normal(3 * RATE) * 0.05,
        "mains hum": 0.2 * np.sin(2 * np.pi * 50 * t),
        "chord": 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)),
        "melody": 0.2 * np.sin(2 * np.pi * scale * t),
    }


@pytest.mark.parametrize("name", list(signals()))
def test_silence_noise_and_music_give_no_transcript(transcriber: Transcriber, name: str) -> None:
    audio = (signals()[name] * 32767).astype("<i2").tobytes()
    result = transcriber.transcribe(audio)
    assert result.rejected and result.text == "", (name, result)
    assert result.reject_reason in ("no_speech", "silence_phrase", "repetition")


def test_loop_detection_cuts_periodic_tails_only() -> None:
    assert cut_at_self_repeat([1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1]) == [1, 2, 3, 4, 5]
    assert cut_at_self_repeat([9, 9, 9]) == [9]
    assert cut_at_self_repeat([7, 8, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2]) == [7, 8, 1, 2, 3, 4]
    assert cut_at_self_repeat([1, 2, 1]) is None  # "I think I": a short period must repeat whole
    assert cut_at_self_repeat([1, 2, 3, 4, 5, 6]) is None


def test_a_decode_stops_at_a_loop_but_not_at_speech_that_repeats() -> None:
    assert is_looping([7, 8, 1, 2, 3, 4, 1, 2, 3, 4])  # a sentence said twice over, nothing between
    assert is_looping([5] * 8)
    assert not is_looping([5] * 7)  # "no, no, no": speech repeats a word a few times
    assert not is_looping([1, 2, 1, 2, 1, 2])  # "thank you, thank you, thank you"
    assert not is_looping([1, 2, 3, 4, 1, 2, 3, 9])
    assert not is_looping([])
    for tail in ([7, 8, 1, 2, 3, 4, 1, 2, 3, 4], [5] * 8, [3, 1, 2, 1, 2, 1, 2, 1, 2]):
        assert is_looping(tail) and cut_at_self_repeat(tail) is not None  # what stops the decode, the cut cuts


def test_wer_normalisation_writes_numbers_as_words() -> None:
    assert normalize("Press 3, then the 20th!") == ["press", "three", "then", "the", "twentieth"]
    assert wer(["press one for sales"], ["Press 1 for sales."]) == 0.0
    assert wer(["a b c d"], ["a x c"]) == 0.5


def test_a_hurried_final_is_the_greedy_decode_and_keeps_the_words(transcriber: Transcriber) -> None:
    """A final started with others behind it (the ASR stage's catch-up) decodes its short window greedily."""
    greedy = Transcriber(TranscriberOptions(beam_size=1))
    hurried = transcriber.transcribe(utterance(1), hurry=True)
    assert hurried.text == greedy.transcribe(utterance(1)).text
    assert hurried.avg_logprob == greedy.transcribe(utterance(1)).avg_logprob
    assert hurried.avg_logprob != transcriber.transcribe(utterance(1)).avg_logprob  # the beam scores these words apart
    assert wer([PROMPTS[1]["text"]], [hurried.text]) <= 0.1


def test_the_asr_stage_hurries_a_final_only_while_others_wait_behind_it() -> None:
    from moodstream.processors.stages.asr import FinalsQueue

    queue = FinalsQueue(catch_up=True)
    queue.add()
    assert queue.take() is False  # alone: the full beam
    queue.add(), queue.add(), queue.add()
    assert [queue.take(), queue.take(), queue.take()] == [True, True, False]  # the last of a backlog waits for none
    assert queue.counts() == {"finals": 4, "finals_hurried": 2}
    queue.add(), queue.add()
    assert queue.take(decodes=False) is False and queue.take() is False  # gated: leaves the queue, counts nothing
    assert queue.counts() == {"finals": 5, "finals_hurried": 2}
    off = FinalsQueue(catch_up=False)
    off.add(), off.add()
    assert [off.take(), off.take()] == [False, False] and off.counts()["finals_hurried"] == 0
