"""The endpointer core on real speech, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moodstream.processors.endpointer import (
    AcousticChunk,
    Endpointer,
    EndpointerOptions,
    SpeechSoFar,
    SpeechStart,
    UtteranceCut,
)
from moodstream.processors.vad import SileroStream, load_silero
from moodstream.producers.audio import load_pcm16

DATA = Path(__file__).parent / "data"
SPEECH = load_pcm16(DATA / "three_prompts.wav")
TRUTH = json.loads((DATA / "three_prompts.json").read_text())


@pytest.fixture(scope="module")
def model():
    return load_silero()


def run(endpointer: Endpointer, pcm: bytes, frame_ms: int = 20, start: int = 0) -> list:
    step = 32 * frame_ms
    events = []
    for offset in range(0, len(pcm), step):
        events.extend(endpointer.feed(pcm[offset : offset + step], start + offset // 2))
    return events


def test_utterance_boundaries_match_the_prompts(model) -> None:
    endpointer = Endpointer(SileroStream(model))
    events = run(endpointer, SPEECH) + endpointer.flush()
    cuts = [e for e in events if isinstance(e, UtteranceCut)]
    assert [c.utterance_seq for c in cuts] == [0, 1, 2]
    for cut, truth in zip(cuts, TRUTH, strict=True):
        start_ms, end_ms = truth["speech_ms"]
        assert abs(cut.start_sample / 16 - start_ms) <= 200, (cut, truth)
        assert abs(cut.end_sample / 16 - end_ms) <= 200, (cut, truth)
        assert cut.reason == "silence" and cut.gated is None
        assert cut.pcm_start_sample == cut.start_sample - 16 * 200  # speech padding before
        assert len(cut.pcm) // 2 == cut.end_sample + 16 * 200 - cut.pcm_start_sample
    starts = [e for e in events if isinstance(e, SpeechStart)]
    assert [s.utterance_seq for s in starts] == [0, 1, 2]
    windows = [e for e in events if isinstance(e, AcousticChunk) and e.utterance_seq == 1]
    assert len(windows) >= 9  # the 5.4 s prompt yields a 500 ms window every 500 ms of speech
    assert all(len(w.pcm) == 16000 for w in windows)


def test_without_acoustic_windows_the_same_utterances_are_cut(model) -> None:
    def events(options: EndpointerOptions) -> list:
        endpointer = Endpointer(SileroStream(model), options)
        return run(endpointer, SPEECH) + endpointer.flush()

    with_windows, without = events(EndpointerOptions()), events(EndpointerOptions(acoustic_window_ms=0))
    assert not any(isinstance(e, AcousticChunk) for e in without)
    assert [e for e in with_windows if not isinstance(e, AcousticChunk)] == without


def test_frame_size_does_not_change_the_result(model) -> None:
    def cuts(frame_ms: int) -> list[tuple[int, int]]:
        endpointer = Endpointer(SileroStream(model))
        events = run(endpointer, SPEECH, frame_ms) + endpointer.flush()
        return [(e.start_sample, e.end_sample) for e in events if isinstance(e, UtteranceCut)]

    assert cuts(20) == cuts(100) == cuts(200)


def test_silence_and_noise_produce_no_utterance(model) -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000 * 5) * 30).astype("<i2").tobytes()  # about -60 dBFS
    endpointer = Endpointer(SileroStream(model))
    assert run(endpointer, bytes(16000 * 2 * 3) + noise) + endpointer.flush() == []


def test_long_speech_is_cut_at_the_limit_and_continues(model) -> None:
    options = EndpointerOptions(max_utterance_ms=3000, cut_search_ms=1000)
    endpointer = Endpointer(SileroStream(model), options)
    events = run(endpointer, SPEECH) + endpointer.flush()
    cuts = [e for e in events if isinstance(e, UtteranceCut)]
    long_ones = [c for c in cuts if c.reason == "max_length"]
    assert long_ones, "the 5.4 s prompt must be cut at 3 s"
    for cut in long_ones:
        assert 2000 * 16 <= cut.end_sample - cut.start_sample <= 3000 * 16
        follower = next(c for c in cuts if c.utterance_seq == cut.utterance_seq + 1)
        assert follower.start_sample == cut.end_sample  # nothing lost between the pieces
    assert [c.utterance_seq for c in cuts] == list(range(len(cuts)))


def test_replayed_frames_are_skipped_and_a_checkpoint_resumes_numbering(model) -> None:
    first = Endpointer(SileroStream(model))
    half = len(SPEECH) // 2 // 640 * 640  # in the middle of the long prompt
    events = run(first, SPEECH[: 2 * 16000 * 2])  # the first utterance is cut by 2 s
    cut0 = [e for e in events if isinstance(e, UtteranceCut)]
    assert [c.utterance_seq for c in cut0] == [0]
    # a new owner resumes from the checkpoint: next seq 1, resume at the position the first owner had reached
    second = Endpointer(SileroStream(model), next_utterance_seq=first.next_utterance_seq)
    second.reset(first.position)
    replayed = run(second, SPEECH[:half])  # replay starts earlier than the checkpoint: old frames are skipped
    replayed += run(second, SPEECH[half:], start=half // 2) + second.flush()
    cuts = [e for e in replayed if isinstance(e, UtteranceCut)]
    assert [c.utterance_seq for c in cuts] == [1, 2]
    assert abs(cuts[0].start_sample / 16 - TRUTH[1]["speech_ms"][0]) <= 200


def test_quiet_speech_is_gated_from_asr(model) -> None:
    quiet = (np.frombuffer(SPEECH, dtype="<i2").astype(np.float64) * 10 ** (-40 / 20)).astype("<i2").tobytes()
    endpointer = Endpointer(SileroStream(model), EndpointerOptions(min_rms_dbfs=-45))
    cuts = [e for e in run(endpointer, quiet) + endpointer.flush() if isinstance(e, UtteranceCut)]
    assert cuts and all(c.gated == "too_quiet" for c in cuts)


def test_open_utterances_hand_out_their_audio_in_consecutive_chunks(model) -> None:
    endpointer = Endpointer(SileroStream(model))
    events = run(endpointer, SPEECH) + endpointer.flush()
    cuts = {e.utterance_seq: e for e in events if isinstance(e, UtteranceCut)}
    chunks = [e for e in events if isinstance(e, SpeechSoFar)]
    assert chunks and {c.utterance_seq for c in chunks} < set(cuts)
    for seq in {c.utterance_seq for c in chunks}:
        mine = [c for c in chunks if c.utterance_seq == seq]
        assert [c.chunk_seq for c in mine] == list(range(len(mine)))
        joined = b"".join(c.pcm for c in mine)
        assert mine[0].start_sample == cuts[seq].pcm_start_sample  # from the padded start, like the final's PCM
        assert joined == cuts[seq].pcm[: len(joined)]  # each sample once, in order: the final's audio so far
        assert all(len(c.pcm) // 2 >= 16 * EndpointerOptions().partial_interval_ms for c in mine)
    silent = Endpointer(SileroStream(model), EndpointerOptions(partial_interval_ms=0))
    assert not [e for e in run(silent, SPEECH) if isinstance(e, SpeechSoFar)]
