"""The gateway's session protocol as a pure state machine (`gateway.session.ClientProtocol`): every rule without a
socket or a broker. The socket-level cases are in test_gateway_errors.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moodstream.gateway.session import (
    ClientProtocol,
    Close,
    Publish,
    Reply,
    SessionClosed,
    SessionLimits,
    opening_start,
)
from moodstream.schemas import errors as E
from moodstream.schemas.records import (
    AudioFrame,
    ConnectionClaimed,
    FusedResult,
    PartialResult,
    SentimentScores,
    SessionControl,
    SessionEnded,
    SessionSummary,
    VadEvent,
)
from moodstream.schemas.websocket import StartMessage

LIMITS = SessionLimits(
    max_frame_bytes=6400, audio_batch_ms=100, audio_batch_near_end_ms=40, audio_batch_quiet_ms=200,
    max_realtime_factor=4.0, burst_s=10.0, max_ahead_s=10.0, idle_timeout_s=30.0, max_session_s=3600.0,
)  # fmt: skip
FRAME = bytes(640)  # 20 ms of silence
LOUD = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()  # 20 ms at about -15 dBFS
QUIET = (np.sin(np.arange(320) / 3) * 100).astype("<i2").tobytes()  # about -50 dBFS: a pause
SCORES = SentimentScores(negative=0.1, neutral=0.8, positive=0.1)


def started(now: float = 0.0, start: StartMessage | None = None, claim_ms: float = 1000.0) -> ClientProtocol:
    protocol = ClientProtocol(LIMITS, "s1", "c1", now)
    protocol.start(start, "token", 0.0, claim_ms)
    return protocol


def codes(actions: list) -> list[str]:
    return [a.message.get("code", a.message["type"]) if isinstance(a, Reply) else type(a).__name__ for a in actions]


def result(seq: int, final: bool = True, revision: int = 1) -> FusedResult:
    return FusedResult(
        session_id="s1", utterance_seq=seq, final=final, revision=revision, start_ms=0, end_ms=1, text="hi",
        text_sentiment=SCORES, audio_sentiment=None, fused_score=0.0, fused_label="neutral",
        weights={"text": 1.0, "audio": 0.0}, latencies_ms={}, model_versions={},
    )  # fmt: skip


# the first message ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["not json", '{"type":"ping"}', '{"type":"end"}', '{"type":"dance"}'])
def test_any_text_before_start_but_a_start_is_bad_start(text: str) -> None:
    with pytest.raises(SessionClosed) as refused:
        opening_start(text)
    assert refused.value.error is E.BAD_START


def test_the_rate_must_be_the_number_16000() -> None:
    for rate in ('"16000"', "8000"):
        with pytest.raises(SessionClosed) as refused:
            opening_start(f'{{"type":"start","sample_rate":{rate}}}')
        assert refused.value.error is E.BAD_START
    assert opening_start('{"type":"start","sample_rate":16000}').sample_rate == 16000


def test_a_start_over_64_kb_is_frame_too_large() -> None:
    text = json.dumps({"type": "start", "delivered_utterances": list(range(20_000))})
    with pytest.raises(SessionClosed) as refused:
        opening_start(text)
    assert refused.value.error is E.FRAME_TOO_LARGE


def test_session_started_announces_the_admitted_rate_and_the_start_goes_first() -> None:
    protocol = ClientProtocol(LIMITS, "s1", "c1", 0.0)
    actions = protocol.start(None, "token", 5.0, 5.0)
    assert isinstance(actions[0], Publish) and actions[0].record.action == "start"
    assert isinstance(actions[1], Reply)
    message = actions[1].message
    assert (message["max_frame_ms"], message["max_realtime_factor"], message["burst_s"]) == (200, 4.0, 10.0)


def test_a_resume_continues_at_the_clients_resend_point_and_skips_what_it_holds() -> None:
    start = StartMessage(type="start", resume_token="t", resume_from_sample=48_000, delivered_utterances=[0, 1])
    protocol = started(start=start)
    assert protocol.next_sample == 48_000 and protocol.final_utterances == {0, 1}
    assert protocol.on_event(result(1)) == []  # held by the client already


# audio in -------------------------------------------------------------------------------------------------------
def test_frames_are_joined_into_100_ms_records_in_order() -> None:
    protocol = started()
    published = [a for n in range(10) for a in protocol.on_audio(LOUD, n * 0.02, 0.0) if isinstance(a, Publish)]
    assert [(p.record.seq, p.record.start_sample, len(p.record.pcm)) for p in published] == [
        (0, 0, 3200),
        (1, 1600, 3200),
    ]


def test_a_held_batch_is_published_when_due_even_if_the_client_pauses() -> None:
    protocol = started()
    assert protocol.on_audio(LOUD, 0.0, 0.0) == []
    assert protocol.next_deadline() == pytest.approx(0.1)
    [publish] = protocol.on_tick(0.1, 0.0)
    assert isinstance(publish, Publish) and len(publish.record.pcm) == 640


def batch_sizes(protocol: ClientProtocol, audio: list[bytes]) -> list[int]:
    """Frames per published record as `audio` (20 ms frames) streams in."""
    published = [a for n, frame in enumerate(audio) for a in protocol.on_audio(frame, n * 0.02, 0.0)]
    return [len(p.record.pcm) // 640 for p in published if isinstance(p, Publish)]


def test_batches_shrink_only_while_an_end_of_speech_may_be_near() -> None:
    protocol = started()
    audio = [LOUD] * 25 + [QUIET] * 60  # 0.5 s of speech, then 1.2 s of pause
    sizes = batch_sizes(protocol, audio)
    assert sizes[:5] == [5] * 5  # speech: 100 ms records
    assert 2 in sizes  # 350-800 ms into the pause: 40 ms records, where the endpointer (500 ms of silence) cuts
    assert sizes[-1] == 10  # past 800 ms of pause: 200 ms records, nothing can end there
    assert sum(sizes) + len(protocol.batch) == len(audio)


def speech_end(at_ms: float, seq: int = 0) -> VadEvent:
    return VadEvent(type="vad.speech_end", session_id="s1", utterance_seq=seq, at_ms=at_ms)


def test_once_the_utterance_is_cut_the_rest_of_its_pause_goes_in_long_quiet_records() -> None:
    protocol = started()
    batch_sizes(protocol, [LOUD] * 25 + [QUIET] * 20)  # 0.5 s of speech, 0.4 s of pause
    assert batch_sizes(protocol, [QUIET] * 4) == [2, 2]  # near an end: 40 ms records
    protocol.on_event(speech_end(500.0))  # the endpointer's cut of that speech comes back
    assert batch_sizes(protocol, [QUIET] * 20) == [10, 10]  # nothing near any more: 200 ms records
    assert batch_sizes(protocol, [QUIET, LOUD]) == [2]  # the next speech waits for no batch


def test_a_late_speech_end_of_an_earlier_utterance_keeps_the_near_end_records() -> None:
    protocol = started()
    batch_sizes(protocol, [LOUD] * 25 + [QUIET] * 30 + [LOUD] * 25 + [QUIET] * 20)  # the second utterance's pause
    protocol.on_event(speech_end(500.0))  # the first utterance's end, 1.1 s before this pause began
    assert batch_sizes(protocol, [QUIET] * 4) == [2, 2]


def test_a_cut_while_the_speech_goes_on_keeps_the_next_pauses_near_end_records() -> None:
    protocol = started()
    batch_sizes(protocol, [LOUD] * 25)
    protocol.on_event(speech_end(450.0))  # a cut at the longest utterance, in speech: no pause is over
    batch_sizes(protocol, [QUIET] * 20)
    assert batch_sizes(protocol, [QUIET] * 4) == [2, 2]


def test_one_partys_speech_end_keeps_a_calls_near_end_records() -> None:
    protocol = started(start=CALL)
    loud, quiet = (np.repeat(np.frombuffer(pcm, dtype="<i2"), 2).tobytes() for pcm in (LOUD, QUIET))
    batch_sizes(protocol, [loud] * 25 + [quiet] * 20)
    protocol.on_event(speech_end(500.0))  # the other party may still be talking
    assert batch_sizes(protocol, [quiet] * 4) == [4, 4]  # 40 ms records (of 1280 bytes: `batch_sizes` counts 640)


def test_a_long_quiet_goes_in_fewer_records_and_speech_after_it_waits_for_none() -> None:
    protocol = started()
    assert set(batch_sizes(protocol, [QUIET] * 60)) == {10}  # quiet from the start: 200 ms records
    assert batch_sizes(protocol, [QUIET] * 3) == []  # held: 60 ms of quiet
    assert batch_sizes(protocol, [LOUD]) == [4]  # the first loud frame sends it, itself included
    assert batch_sizes(protocol, [LOUD] * 5) == [5]  # then speech in 100 ms records
    assert protocol.next_sample == 69 * 320 and not protocol.batch


def test_no_batching_asked_means_none_in_a_quiet_either() -> None:
    from moodstream.settings import Settings

    limits = SessionLimits.from_settings(Settings(audio_batch_ms=0))
    assert (limits.audio_batch_ms, limits.audio_batch_near_end_ms, limits.audio_batch_quiet_ms) == (0, 0, 0)
    protocol = ClientProtocol(limits, "s1", "c1", 0.0)
    protocol.start(None, "token", 0.0, 1000.0)
    assert batch_sizes(protocol, [QUIET] * 3 + [LOUD] * 2) == [1] * 5


def test_odd_and_oversized_frames() -> None:
    protocol = started()
    assert codes(protocol.on_audio(b"\x01\x02\x03", 0.0, 0.0)) == ["odd_frame"]
    [close] = protocol.on_audio(bytes(6402), 0.0, 0.0)
    assert isinstance(close, Close) and close.error is E.FRAME_TOO_LARGE


def test_text_after_start() -> None:
    protocol = started()
    assert codes(protocol.on_text('{"type":"ping"}', 0.0, 0.0)) == ["pong"]
    assert codes(protocol.on_text("nonsense", 0.0, 0.0)) == ["bad_message"]
    assert codes(protocol.on_text('{"type":"start"}', 0.0, 0.0)) == ["bad_message"]
    [close] = protocol.on_text(" " * 70_000, 0.0, 0.0)
    assert isinstance(close, Close) and close.error is E.FRAME_TOO_LARGE


def test_audio_ahead_of_the_admitted_rate_is_warned_once_then_closed() -> None:
    protocol = started()
    seen: list[str] = []
    for n in range(1500):  # 30 s of audio sent in the first second: 10 s burst + 4 s admitted, 10 s more tolerated
        seen += codes(protocol.on_audio(FRAME, n / 1500, 0.0))
        if "Close" in seen:
            break
    assert seen.count("too_fast") == 1 and seen[-1] == "Close"
    assert 20.0 < protocol.connection_samples / 16_000 < 25.0


def test_a_client_at_the_admitted_rate_is_never_warned() -> None:
    protocol = started()
    frames_per_s = 4 * 50  # 4× real time
    actions = [a for n in range(frames_per_s * 60) for a in protocol.on_audio(FRAME, n / frames_per_s, 0.0)]
    assert "too_fast" not in codes(actions) and "Close" not in codes(actions)


def test_pings_do_not_keep_a_session_alive_but_audio_does() -> None:
    protocol = started()
    for second in range(0, 30, 10):
        assert codes(protocol.on_text('{"type":"ping"}', float(second), 0.0)) == ["pong"]
    actions = protocol.on_tick(30.0, 0.0)
    assert codes(actions) == ["idle_timeout", "Publish"] and actions[1].record.reason == "idle"
    talking = started()
    talking.on_audio(FRAME, 25.0, 0.0)
    assert not any(isinstance(a, Publish) and isinstance(a.record, SessionControl) for a in talking.on_tick(30.0, 0.0))


def test_end_flushes_the_held_audio_then_ends_once() -> None:
    protocol = started()
    protocol.on_audio(FRAME, 0.0, 0.0)
    actions = protocol.on_text('{"type":"end"}', 0.0, 0.0)
    assert [type(a.record).__name__ for a in actions] == ["AudioFrame", "SessionControl"]
    assert actions[1].record.next_seq == 1 and protocol.end("disconnect", 0.0) == []


def test_a_refused_record_steps_the_sample_clock_back() -> None:
    protocol = started()
    [frame] = [a.record for n in range(5) for a in protocol.on_audio(LOUD, 0.0, 0.0) if isinstance(a, Publish)]
    assert isinstance(frame, AudioFrame)
    assert codes(protocol.publish_refused(frame)) == ["audio_dropped"]
    assert (protocol.seq, protocol.next_sample) == (0, 0)


# events out -----------------------------------------------------------------------------------------------------
def test_repeats_and_late_provisional_events_are_dropped() -> None:
    protocol = started()
    assert len(protocol.on_event(result(0))) == 1
    assert protocol.on_event(result(0)) == [] and protocol.duplicates_dropped == 1
    late = PartialResult(session_id="s1", utterance_seq=0, revision=3, start_ms=0, end_ms=1, text="h",
                         text_sentiment=SCORES)  # fmt: skip
    assert protocol.on_event(late) == []


def test_session_ended_waits_for_every_final_result() -> None:
    protocol = started()
    protocol.on_text('{"type":"end"}', 0.0, 0.0)
    ended = SessionEnded(session_id="s1", utterances=2, awaiting_results=True, reason="client", duration_ms=1.0)
    assert protocol.on_event(ended) == [] and protocol.missing_results() == [0, 1]
    protocol.on_event(result(0))
    actions = protocol.on_event(result(1))
    assert [a.message["type"] for a in actions] == ["utterance", "session.ended"] and protocol.done


def test_the_end_of_an_earlier_connection_is_not_this_ones() -> None:
    protocol = started()
    protocol.on_text('{"type":"end"}', 0.0, 0.0)
    earlier = SessionEnded(session_id="s1", utterances=0, reason="disconnect", duration_ms=1.0)
    assert protocol.on_event(earlier) == [] and not protocol.done


def test_a_later_claim_takes_the_session_over_without_ending_it() -> None:
    protocol = started(claim_ms=1000.0)
    assert protocol.on_event(ConnectionClaimed(session_id="s1", connection_id="c1", instance_id="g", at_ms=1000)) == []
    older = ConnectionClaimed(session_id="s1", connection_id="c0", instance_id="g", at_ms=900)
    assert protocol.on_event(older) == []  # a claim from before this connection, arriving late
    [close] = protocol.on_event(ConnectionClaimed(session_id="s1", connection_id="c2", instance_id="g2", at_ms=1001))
    assert isinstance(close, Close) and close.error is E.TAKEN_OVER
    assert protocol.taken_over and protocol.end("disconnect", 0.0) == []


def test_a_resume_that_only_collects_takes_the_end_an_earlier_connection_made() -> None:
    start = StartMessage(type="start", resume_token="t", resume_from_sample=0, delivered_utterances=[0])
    protocol = started(start=start)  # the earlier connection ended the session and was closed `results_late`
    ended = SessionEnded(session_id="s1", utterances=2, awaiting_results=True, reason="client", duration_ms=1.0)
    assert protocol.on_event(ended) == []
    assert [a.message["type"] for a in protocol.on_event(result(1))] == ["utterance", "session.ended"]
    protocol.on_text('{"type":"end"}', 0.0, 0.0)  # its own end repeats the earlier one: nothing more is sent
    assert protocol.on_event(ended.model_copy(update={"utterances": 0})) == []


# calls ----------------------------------------------------------------------------------------------------------
CALL = StartMessage.model_validate({"type": "start", "options": {"channels": 2, "roles": ["agent", "customer"]}})


def test_a_calls_frames_are_stereo_sample_frames_and_its_limits_are_durations() -> None:
    protocol = started(start=CALL)
    stereo = np.repeat(np.frombuffer(LOUD, dtype="<i2"), 2).tobytes()  # 20 ms of both channels speaking
    published = [a for n in range(10) for a in protocol.on_audio(stereo, n * 0.02, 0.0) if isinstance(a, Publish)]
    assert [(p.record.start_sample, p.record.channels, p.record.samples) for p in published] == [
        (0, 2, 1600),
        (1600, 2, 1600),
    ]
    assert codes(protocol.on_audio(bytes(6), 0.0, 0.0)) == ["odd_frame"]  # not whole stereo sample frames
    assert codes(protocol.on_audio(bytes(12800), 0.3, 0.0)) == ["Publish"]  # 200 ms of stereo: within the limit
    [close] = protocol.on_audio(bytes(12804), 0.4, 0.0)
    assert isinstance(close, Close) and close.error is E.FRAME_TOO_LARGE


def test_a_call_ends_once_each_partys_final_results_are_in() -> None:
    protocol = started(start=CALL)
    protocol.on_text('{"type":"end"}', 0.0, 0.0)
    ended = SessionEnded(session_id="s1", utterances=3, awaiting_results=True, reason="client", duration_ms=1.0,
                         channel_utterances=[1, 2])  # fmt: skip
    assert protocol.on_event(ended) == [] and protocol.missing_results() == [0, 1, 3]
    protocol.on_event(result(0))
    protocol.on_event(result(3))
    actions = protocol.on_event(result(1))
    assert [a.message["type"] for a in actions] == ["utterance", "session.ended"] and protocol.done


BAD_CALLS = [{"channels": 3}, {"channels": 2, "roles": ["a"]}, {"roles": ["a", "a"]},
             {"channels": 2, "roles": ["a", "a"]}, {"channels": 2, "roles": ["a b", "c"]}]  # fmt: skip


@pytest.mark.parametrize("options", BAD_CALLS)
def test_a_start_with_bad_call_options_is_bad_start(options: dict) -> None:
    with pytest.raises(SessionClosed) as refused:
        opening_start(json.dumps({"type": "start", "options": options}))
    assert refused.value.error is E.BAD_START


def summary_of(utterances: int, reason: str = "client") -> SessionSummary:
    return SessionSummary(session_id="s1", reason=reason, duration_ms=1.0, utterances=utterances, parties=[],
                          silence_share=0.5)  # fmt: skip


def test_session_ended_waits_for_the_summary_of_this_end_and_carries_it() -> None:
    protocol = started()
    protocol.on_text('{"type":"end"}', 0.0, 0.0)
    assert protocol.on_event(summary_of(0, "disconnect")) == []  # an earlier end's: not this one's
    ended = SessionEnded(session_id="s1", utterances=1, awaiting_results=True, reason="client", duration_ms=1.0,
                         awaiting_summary=True)  # fmt: skip
    assert protocol.on_event(ended) == [] and protocol.on_event(result(0)) != [] and not protocol.done
    [reply] = protocol.on_event(summary_of(1))
    assert reply.message["type"] == "session.ended" and reply.message["summary"]["silence_share"] == 0.5
    assert protocol.done
