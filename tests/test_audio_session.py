"""The audio stage's state machine on real speech, without a broker: what it sends, stores and acks, and that a
worker taking a session over from its checkpoint neither repeats nor loses an utterance."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodstream.processors.audio_session import AudioSession, Send, Step, Store
from moodstream.processors.endpointer import Endpointer
from moodstream.processors.level import LevelMeter
from moodstream.processors.vad import SileroStream, load_silero
from moodstream.producers.audio import load_pcm16
from moodstream.schemas.records import (
    AudioFrame,
    PartialAudio,
    SessionCheckpoint,
    SessionControl,
    SessionEnded,
    Utterance,
)
from moodstream.schemas.topics import PARTIAL_AUDIO, UTTERANCES

SPEECH = load_pcm16(Path(__file__).parent / "data" / "three_prompts.wav")
FRAME = 3200  # bytes: 100 ms records, as the gateway joins them


@pytest.fixture(scope="module")
def model():
    return load_silero()


def new_session(model, checkpoint: SessionCheckpoint | None = None) -> AudioSession[int]:
    return AudioSession("s1", Endpointer(SileroStream(model)), LevelMeter(500), checkpoint)


def checkpoint(next_seq: int, resume: int, alpha: float | None) -> SessionCheckpoint:
    return SessionCheckpoint(session_id="s1", next_utterance_seq=next_seq, resume_sample=resume, fusion_alpha=alpha)


def frame(offset: int) -> AudioFrame:
    pcm = SPEECH[offset : offset + FRAME]
    return AudioFrame(session_id="s1", seq=offset // FRAME, start_sample=offset // 2, received_at_ms=1.0, pcm=pcm)


def end(reason: str = "client") -> SessionControl:
    return SessionControl(session_id="s1", action="end", next_seq=0, reason=reason, at_ms=2.0)  # type: ignore[arg-type]


def utterances(steps: list[Step[int]]) -> list[Utterance]:
    return [a.record for s in steps for a in s.actions if isinstance(a, Send) and a.topic == UTTERANCES]  # type: ignore[misc]


def feed(session: AudioSession[int], offsets: range) -> list[Step[int]]:
    return [session.on_frame(frame(offset), offset // FRAME) for offset in offsets]


def test_each_utterance_is_sent_before_the_checkpoint_that_counts_it_and_frames_are_acked_after(model) -> None:
    session = new_session(model)
    steps = feed(session, range(0, len(SPEECH), FRAME))
    assert [u.utterance_seq for u in utterances(steps)] == [0, 1, 2]
    for step in steps:
        kinds = [type(a) for a in step.actions]
        if Store in kinds:  # an utterance was cut in this step: it is sent first, the checkpoint written after
            assert kinds.index(Store) > kinds.index(Send)
    acked = [token for step in steps for token in step.acks]
    assert acked == sorted(acked) and len(acked) < len(steps)  # in order; the tail is held (padding)
    final = session.on_end(end(), 999)
    assert final.acks[-1] == 999 and set(acked + final.acks[:-1]) == set(range(len(steps)))
    ended = [a.record for a in final.actions if isinstance(a, Send) and isinstance(a.record, SessionEnded)]
    assert ended[0].utterances == 3
    assert final.actions[-1] == Store(None)  # a normal end drops the checkpoint


def test_a_takeover_from_the_checkpoint_replays_held_frames_without_repeating_or_losing_an_utterance(model) -> None:
    first = new_session(model)
    middle = len(SPEECH) // 2 // FRAME * FRAME
    before = feed(first, range(0, middle, FRAME))
    stored = [a.checkpoint for s in before for a in s.actions if isinstance(a, Store)]
    acked = {token for step in before for token in step.acks}
    # the worker dies here: the next owner reads the last checkpoint and gets every unacked frame again
    second = new_session(model, stored[-1])
    replay_from = min(set(range(middle // FRAME)) - acked) * FRAME
    after = [*feed(second, range(replay_from, len(SPEECH), FRAME)), second.on_end(end(), 999)]
    seqs = [u.utterance_seq for u in utterances(before)] + [u.utterance_seq for u in utterances(after)]
    assert seqs == [0, 1, 2]


def test_a_disconnect_keeps_the_checkpoint_and_a_resent_frame_counts_once(model) -> None:
    session = new_session(model)
    feed(session, range(0, 10 * FRAME, FRAME))
    again = session.on_frame(frame(9 * FRAME), 100)  # a resuming client resends audio the worker already has
    assert again.actions == []  # nothing new in it: no level, no VAD step
    step = session.on_end(end("disconnect"), 999)
    assert [u.utterance_seq for u in utterances([step])] == [0]  # "Goodbye!" was open at the disconnect
    assert step.actions[-1] == Store(checkpoint(1, 10 * FRAME // 2, None))


def test_a_start_with_a_text_weight_stores_it_before_the_ack_and_utterances_carry_it(model) -> None:
    session = new_session(model)
    start = SessionControl.model_validate(
        {"session_id": "s1", "action": "start", "next_seq": 0, "options": {"fusion_alpha": 0.2}, "at_ms": 0.0}
    )
    step = session.on_start(start, 0)
    assert step.actions == [Store(checkpoint(0, 0, 0.2))] and step.acks == [0]
    sent = utterances(feed(session, range(0, len(SPEECH), FRAME)))
    assert sent and all(u.fusion_alpha == 0.2 for u in sent)


def partial_audio(steps: list[Step[int]]) -> list[PartialAudio]:
    return [a.record for s in steps for a in s.actions if isinstance(a, Send) and a.topic == PARTIAL_AUDIO]  # type: ignore[misc]


def test_open_utterances_send_their_audio_for_partials_unless_the_session_turned_them_off(model) -> None:
    session = new_session(model)
    chunks = partial_audio(feed(session, range(0, len(SPEECH), FRAME)))
    assert {c.utterance_seq for c in chunks} == {1, 2}  # "Goodbye!" is over before a second of it is heard
    second = [c.chunk_seq for c in chunks if c.utterance_seq == 1]  # 5 s of speech: a chunk a second
    assert second == list(range(len(second))) and len(second) >= 4
    quiet = new_session(model)
    start = SessionControl.model_validate(
        {"session_id": "s1", "action": "start", "next_seq": 0, "options": {"partials": False}, "at_ms": 0.0}
    )
    step = quiet.on_start(start, 0)
    assert step.actions == [Store(checkpoint(0, 0, None).model_copy(update={"partials": False}))]
    assert partial_audio(feed(quiet, range(0, len(SPEECH), FRAME))) == []
    taken_over = new_session(model, quiet.checkpoint())  # a takeover keeps the choice
    assert taken_over.partials is False


def pcm_of(steps: list[Step[int]]) -> list[bytes]:
    return [u.pcm for u in utterances(steps)]


def test_frames_that_come_ahead_of_older_ones_wait_for_them_and_the_result_is_the_in_order_one(model) -> None:
    """A switch of topic slot (or a replay) can hand a newer frame over before older ones: audio is still taken in
    sample order, the early frames stay unacked until then, and the utterances are exactly those of in-order audio."""
    offsets = list(range(0, len(SPEECH), FRAME))
    in_order = feed(new_session(model), range(0, len(SPEECH), FRAME))
    shuffled = offsets[:]
    for at in (20, 45, 70):  # three switches, each delivering 4 newer frames before the 3 older ones in front
        shuffled[at : at + 7] = shuffled[at + 3 : at + 7] + shuffled[at : at + 3]
    session = new_session(model)
    steps = [session.on_frame(frame(offset), offset // FRAME) for offset in shuffled]
    assert pcm_of(steps) == pcm_of(in_order)
    early = steps[shuffled.index(offsets[23])]  # the first newer frame: nothing taken, nothing acked
    assert early.actions == [] and early.acks == []
    acked = [token for step in steps for token in step.acks]
    assert acked == sorted(acked)


def test_an_end_that_overtakes_the_last_frames_waits_for_them(model) -> None:
    session = new_session(model)
    offsets = list(range(0, len(SPEECH), FRAME))
    steps = feed(session, range(0, offsets[-3], FRAME))
    steps.append(session.on_frame(frame(offsets[-1]), 1001))  # a newer slot: the last frame and the end
    waiting = session.on_end(end(), 999)
    assert waiting.actions == [] and not session.ended
    steps += [waiting, session.on_frame(frame(offsets[-3]), 1002), session.on_frame(frame(offsets[-2]), 1003)]
    assert session.ended and [u.utterance_seq for u in utterances(steps)] == [0, 1, 2]
    assert steps[-1].acks[-1] == 999  # the end is acked last, with everything held


def test_a_gap_that_never_fills_is_given_up_without_stalling_the_session(model) -> None:
    session = new_session(model)
    feed(session, range(0, 10 * FRAME, FRAME))
    lost = range(10 * FRAME, 12 * FRAME, FRAME)  # never delivered
    after = feed(session, range(lost.stop, len(SPEECH), FRAME))
    assert any(step.acks for step in after)  # taken after waiting MAX_EARLY_MS of audio, not held forever
    assert not session.early or sum(len(f.pcm) for f, _t in session.early.values()) // 2 <= 160_000
