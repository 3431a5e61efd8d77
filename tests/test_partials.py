"""Partial transcripts without a broker: the tracker's state machine, and the decoder on real read speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moodstream.cli.bench.wer import wer
from moodstream.processors.partials import PartialOptions, PartialTracker
from moodstream.processors.transcriber import Transcriber
from moodstream.producers.audio import load_pcm16
from moodstream.schemas.records import PartialAudio

DATA = Path(__file__).parent / "data"
SECOND = 32_000  # bytes of 16 kHz int16


def chunk(seq: int, chunk_seq: int, session: str = "s1", received_at_ms: float = 0.0) -> PartialAudio:
    start = chunk_seq * 1000.0
    return PartialAudio(session_id=session, utterance_seq=seq, chunk_seq=chunk_seq, start_ms=start,
                        end_ms=start + 1000, speech_start_ms=200.0, received_at_ms=received_at_ms,
                        pcm=bytes([chunk_seq % 256]) * SECOND)  # fmt: skip


def test_a_decode_is_due_for_each_new_second_and_holds_the_utterance_so_far() -> None:
    tracker = PartialTracker()
    first = tracker.on_chunk(chunk(0, 0), now_ms=0)
    assert first is not None and first.pcm == chunk(0, 0).pcm
    assert tracker.on_chunk(chunk(0, 0), now_ms=0) is None  # a repeat adds nothing
    partial = tracker.on_decoded(first, "Hello there", "m", 10.0)
    assert partial is not None and (partial.revision, partial.text, partial.end_ms) == (1, "Hello there", 1000)
    second = tracker.on_chunk(chunk(0, 1), now_ms=0)
    assert second is not None and second.pcm == chunk(0, 0).pcm + chunk(0, 1).pcm
    assert tracker.on_decoded(second, "Hello there", "m", 10.0) is None  # nothing new: dropped
    third = tracker.on_chunk(chunk(0, 2), now_ms=0)
    assert third is not None
    assert tracker.on_decoded(third, "Hello there, friend", "m", 10.0).revision == 2  # type: ignore[union-attr]


def test_words_two_decodes_agree_on_are_settled_but_the_last_of_them() -> None:
    """The next decode is given the words the last two agreed on from the start, less the newest of them (it may still
    change with the audio after it); a decode that repeats the previous text counts as agreeing with it."""
    tracker = PartialTracker()
    first = tracker.on_chunk(chunk(0, 0), now_ms=0)
    assert first is not None and first.settled == ""
    tracker.on_decoded(first, "I will say nothing", "m", 1.0)
    second = tracker.on_chunk(chunk(0, 1), now_ms=0)
    assert second is not None and second.settled == ""  # one decode: nothing agreed yet
    tracker.on_decoded(second, "I will say nothing of my", "m", 1.0)
    third = tracker.on_chunk(chunk(0, 2), now_ms=0)
    assert third is not None and third.settled == "I will say"
    tracker.on_decoded(third, "I'll say nothing of my ante", "m", 1.0)
    fourth = tracker.on_chunk(chunk(0, 3), now_ms=0)
    assert fourth is not None and fourth.settled == ""  # the start changed: decode from the start again
    tracker.on_decoded(fourth, "I'll say nothing of my ante", "m", 1.0)  # a repeat: no partial, but agreement
    fifth = tracker.on_chunk(chunk(0, 4), now_ms=0)
    assert fifth is not None and fifth.settled == "I'll say nothing of my"
    assert tracker.on_chunk(chunk(1, 0), now_ms=0).settled == ""  # type: ignore[union-attr]  # a new utterance


def test_settling_can_be_turned_off() -> None:
    tracker = PartialTracker(PartialOptions(unsettled_words=None))
    for index, text in enumerate(("a b c", "a b c d")):
        decode = tracker.on_chunk(chunk(0, index), now_ms=0)
        assert decode is not None and decode.settled == ""
        tracker.on_decoded(decode, text, "m", 1.0)
    assert tracker.on_chunk(chunk(0, 2), now_ms=0).settled == ""  # type: ignore[union-attr]


def test_no_partial_once_the_final_arrived_even_from_a_decode_in_flight() -> None:
    tracker = PartialTracker()
    decode = tracker.on_chunk(chunk(3, 0), now_ms=0)
    assert decode is not None
    tracker.finished("s1", 3)
    assert tracker.on_decoded(decode, "late", "m", 1.0) is None
    assert tracker.on_chunk(chunk(3, 1), now_ms=0) is None and tracker.on_chunk(chunk(2, 0), now_ms=0) is None
    assert tracker.on_chunk(chunk(4, 0), now_ms=0) is not None  # the next utterance has partials again


def test_a_missing_chunk_stops_the_utterance_partials_and_a_takeover_mid_utterance_waits_for_the_next() -> None:
    tracker = PartialTracker()
    tracker.on_chunk(chunk(0, 0), now_ms=0)
    assert tracker.on_chunk(chunk(0, 2), now_ms=0) is None  # chunk 1 never came: the audio has a hole
    assert tracker.on_chunk(chunk(0, 3), now_ms=0) is None
    other = PartialTracker()
    assert other.on_chunk(chunk(5, 4), now_ms=0) is None  # joined in the middle of utterance 5
    assert other.on_chunk(chunk(6, 0), now_ms=0) is not None


def test_a_chunk_heard_too_long_ago_is_kept_but_not_decoded() -> None:
    tracker = PartialTracker(PartialOptions(max_lag_ms=1500))
    assert tracker.on_chunk(chunk(0, 0, received_at_ms=1000.0), now_ms=9000.0) is None  # the stage is behind
    caught_up = tracker.on_chunk(chunk(0, 1, received_at_ms=9000.0), now_ms=9100.0)
    assert caught_up is not None and len(caught_up.pcm) == 2 * SECOND  # nothing was lost meanwhile


def test_memory_is_bounded_by_sessions() -> None:
    tracker = PartialTracker(PartialOptions(max_sessions=2))
    for name in ("a", "b", "c"):
        tracker.on_chunk(chunk(0, 0, session=name), now_ms=0)
        tracker.finished(name, 7)
    assert len(tracker) == 0 and len(tracker._finished) == 2
    for name in ("a", "b", "c"):
        tracker.on_chunk(chunk(8, 0, session=name), now_ms=0)
    assert len(tracker) == 2


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber()


def test_partials_of_real_read_speech_grow_towards_the_final(transcriber: Transcriber) -> None:
    """LibriSpeech dev-clean 2412-153948-0000, its first sentence (0.28-7.9 s), heard a second more each time."""
    pcm = np.frombuffer(load_pcm16(DATA / "read_sentence.wav"), dtype="<i2")[: 7_900 * 16]
    tracker, texts, settled = PartialTracker(), [], []
    for n in range(0, len(pcm), 16_000):
        decode = tracker.on_chunk(PartialAudio(
            session_id="s1", utterance_seq=0, chunk_seq=n // 16_000, start_ms=n / 16, end_ms=(n + 16_000) / 16,
            speech_start_ms=280.0, received_at_ms=0.0, pcm=pcm[n : n + 16_000].tobytes()), now_ms=0)  # fmt: skip
        assert decode is not None
        result = transcriber.transcribe_partial(decode.pcm, decode.settled)  # as the ASR stage decodes it
        settled.append(decode.settled)
        partial = tracker.on_decoded(decode, result.text, transcriber.model_id, result.compute_ms)
        if partial is not None:
            texts.append(partial.text)
    final = transcriber.transcribe(pcm.tobytes()).text
    assert final == (
        "If the reader will excuse me, I will say nothing of my antecedents, "
        "nor of the circumstances which led me to leave my native country."
    )
    assert len(texts) >= 5 and texts[1].startswith("If the reader will excuse me")
    assert wer([final], [texts[-1]]) == 0.0
    assert settled[-1].startswith("If the reader will excuse me")  # later partials did not decode the start again
    assert transcriber.transcribe_partial(np.zeros(16_000, dtype=np.int16)).text == ""  # silence: no words
