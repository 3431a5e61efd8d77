"""A call's audio stage on real speech in two channels, without a broker: each channel is cut as it would be alone,
every record says whose it is, a frame is acked only when both channels are done with it, and a takeover from the
call's checkpoint neither repeats nor loses an utterance of either party."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moodstream.processors.audio_session import AudioSession, Send, Step, Store
from moodstream.processors.call_session import CallSession
from moodstream.processors.endpointer import Endpointer
from moodstream.processors.level import LevelMeter
from moodstream.processors.vad import SileroStream, load_silero
from moodstream.producers.audio import load_pcm16
from moodstream.schemas.records import (
    AudioFrame,
    AudioLevel,
    SessionCheckpoint,
    SessionControl,
    SessionEnded,
    Utterance,
    VadEvent,
)
from moodstream.schemas.topics import UTTERANCES

DATA = Path(__file__).parent / "data"
ROLES = ("agent", "customer")
SAMPLES = 1600  # 100 ms records, as the gateway joins them


def call_audio() -> tuple[np.ndarray, np.ndarray]:
    """The agent's three prompts on the left; the customer's read sentence on the right from 4 s on, overlapping the
    agent's long prompt and last one."""
    left = np.frombuffer(load_pcm16(DATA / "three_prompts.wav"), dtype="<i2")
    read = np.frombuffer(load_pcm16(DATA / "read_sentence.wav"), dtype="<i2")
    length = max(len(left), 64_000 + len(read)) // SAMPLES * SAMPLES + 8 * SAMPLES
    channels = np.zeros((2, length), dtype="<i2")
    channels[0, : len(left)] = left
    channels[1, 64_000 : 64_000 + len(read)] = read
    return channels[0], channels[1]


LEFT, RIGHT = call_audio()
STEREO = np.stack([LEFT, RIGHT], axis=1).reshape(-1)


@pytest.fixture(scope="module")
def model():
    return load_silero()


def new_channel(model) -> tuple[Endpointer, LevelMeter]:
    return Endpointer(SileroStream(model)), LevelMeter(500)


def new_call(model, checkpoint: SessionCheckpoint | None = None) -> CallSession[int]:
    return CallSession("c1", ROLES, lambda: new_channel(model), checkpoint)


def frame(index: int, channels: int = 2, pcm: np.ndarray = STEREO) -> AudioFrame:
    part = pcm[index * SAMPLES * channels : (index + 1) * SAMPLES * channels].tobytes()
    return AudioFrame(session_id="c1", seq=index, start_sample=index * SAMPLES, received_at_ms=1.0,
                      channels=channels, pcm=part)  # fmt: skip


def control(action: str, reason: str = "client") -> SessionControl:
    options = {"channels": 2, "roles": list(ROLES)}
    return SessionControl.model_validate({"session_id": "c1", "action": action, "next_seq": 0, "options": options,
                                          "reason": reason, "at_ms": 2.0})  # fmt: skip


def sent(steps: list[Step[int]], kind: type) -> list:
    return [a.record for s in steps for a in s.actions if isinstance(a, Send) and isinstance(a.record, kind)]


def feed(session: CallSession[int] | AudioSession[int], frames: range, channels: int = 2, pcm=STEREO) -> list[Step]:
    return [session.on_frame(frame(i, channels, pcm), i) for i in frames]


FRAMES = range(len(LEFT) // SAMPLES)


def alone(model, pcm: np.ndarray) -> list[Utterance]:
    session: AudioSession[int] = AudioSession("c1", *new_channel(model))
    steps = [*feed(session, FRAMES, 1, pcm), session.on_end(control("end"), 999)]
    return [a.record for s in steps for a in s.actions if isinstance(a, Send) and a.topic == UTTERANCES]


def spans(utterances: list[Utterance]) -> list[tuple[float, float]]:
    return [(u.start_ms, u.end_ms) for u in utterances]


def test_each_party_is_cut_as_if_alone_numbered_in_its_own_seqs_and_tagged(model) -> None:
    call = new_call(model)
    steps = [call.on_start(control("start"), 0), *feed(call, FRAMES), call.on_end(control("end"), 999)]
    utterances = [a.record for s in steps for a in s.actions if isinstance(a, Send) and a.topic == UTTERANCES]
    agent = [u for u in utterances if u.role == "agent"]
    customer = [u for u in utterances if u.role == "customer"]
    assert spans(agent) == spans(alone(model, LEFT)) and len(agent) == 3
    assert spans(customer) == spans(alone(model, RIGHT)) and len(customer) == 2
    assert [u.utterance_seq for u in agent] == [0, 2, 4] and {u.channel for u in agent} == {0}
    assert [u.utterance_seq for u in customer] == [1, 3] and {u.channel for u in customer} == {1}
    assert any(c.start_ms < a.end_ms and a.start_ms < c.end_ms for a in agent for c in customer)  # they overlap
    levels = sent(steps, AudioLevel)
    assert {(level.channel, level.role) for level in levels} == {(0, "agent"), (1, "customer")}
    assert len({level.identity() for level in levels}) == len(levels)  # a gateway drops neither party's as a repeat
    vad = sent(steps, VadEvent)
    assert {(e.utterance_seq, e.role) for e in vad} == {(u.utterance_seq, u.role) for u in utterances}
    ended, to_fusion = sent(steps, SessionEnded)  # to the clients, and to the fusion stage for the summary
    assert ended == to_fusion and ended.roles == ROLES
    assert ended.channel_utterances == [3, 2] and ended.utterances == 5
    assert ended.utterance_seqs() == [0, 1, 2, 3, 4]
    assert steps[-1].actions[-1] == Store(None) and steps[-1].acks[-1] == 999


def test_a_frame_is_acked_once_both_parties_are_done_with_it_and_every_frame_is_acked_by_the_end(model) -> None:
    call = new_call(model)
    steps = feed(call, range(100))  # 10 s: the agent's long prompt is cut, the customer still speaks
    acked = [token for step in steps for token in step.acks]
    assert acked == sorted(acked) and len(acked) == len(set(acked))
    assert [(u.role, u.utterance_seq) for u in sent(steps, Utterance)] == [("agent", 0), ("agent", 2)]
    customer = next(u for u in sent(feed(new_call(model), FRAMES), Utterance) if u.role == "customer")
    held_from = min(set(range(100)) - set(acked))
    assert held_from * SAMPLES / 16 <= customer.start_ms  # the customer's open speech keeps its frames
    rest = [*feed(call, range(100, len(FRAMES))), call.on_end(control("end"), 999)]
    assert sorted(acked + [token for step in rest for token in step.acks]) == [*FRAMES, 999]


def test_a_takeover_from_the_calls_checkpoint_neither_repeats_nor_loses_an_utterance_of_either_party(model) -> None:
    for stop in (60, 75, 95):  # during the overlap: one party's utterance open while the other's is cut
        first = new_call(model)
        before = [first.on_start(control("start"), -1), *feed(first, range(stop))]
        stored = [a.checkpoint for s in before for a in s.actions if isinstance(a, Store)]
        acked = {token for step in before for token in step.acks}
        second = new_call(model, stored[-1])  # the next owner: the last checkpoint and every unacked frame again
        replay = range(min(set(range(stop)) - acked), len(FRAMES))
        after = [*feed(second, replay), second.on_end(control("end"), 999)]
        seqs = [(u.utterance_seq, u.role) for u in sent(before, Utterance) + sent(after, Utterance)]
        assert sorted(seqs) == sorted(set(seqs)), f"repeated at {stop}"
        assert {s for s, _r in seqs} == set(range(5)), f"lost at {stop}: {seqs}"


def test_the_start_stores_a_call_checkpoint_and_a_disconnect_keeps_each_partys_position(model) -> None:
    call = new_call(model)
    start = call.on_start(control("start"), 0)
    assert start.acks == [0]
    (stored,) = [a.checkpoint for a in start.actions if isinstance(a, Store)]
    assert stored is not None and stored.roles == ROLES and len(stored.channels or []) == 2
    feed(call, range(50))
    step = call.on_end(control("end", "disconnect"), 999)
    kept = step.actions[-1]
    assert isinstance(kept, Store) and kept.checkpoint is not None
    # the disconnect closed what was open: the agent's "Goodbye" and long prompt, the customer's sentence
    assert [p.next_index for p in kept.checkpoint.channels or []] == [2, 1]
    resumed = new_call(model, kept.checkpoint)
    assert resumed.roles == ROLES and [s.endpointer.next_utterance_seq for s in resumed.channels] == [2, 1]


def test_a_frame_with_another_channel_count_is_dropped_and_acked(model) -> None:
    call = new_call(model)
    mono = frame(0, 1, LEFT)
    assert call.on_frame(mono, 7) == Step(acks=[7])


def test_a_mono_session_that_names_its_party_keeps_its_seqs_and_tags_its_records(model) -> None:
    session: CallSession[int] = CallSession("c1", ("customer",), lambda: new_channel(model))
    steps = [*feed(session, FRAMES, 1, LEFT), session.on_end(control("end"), 999)]
    utterances = sent(steps, Utterance)
    assert spans(utterances) == spans(alone(model, LEFT))
    assert [(u.utterance_seq, u.channel, u.role) for u in utterances] == [(n, 0, "customer") for n in range(3)]
    ended, _to_fusion = sent(steps, SessionEnded)
    assert ended.utterance_seqs() == [0, 1, 2]
