"""End to end over real sockets: WebSocket → gateway → Kafka (tansu) → Faust worker → events → the same socket."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from moodstream.cli.bench.load import latest_heartbeats
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import stream_pcm
from moodstream.schemas import decode
from moodstream.schemas.records import DeadLetter
from moodstream.schemas.topics import AUDIO, DEAD_LETTER
from tests.conftest import Stack, tone

DATA = Path(__file__).parent / "data"


def levels(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "level"]


async def test_each_session_gets_its_own_events_in_order(stack: Stack) -> None:
    loud, quiet = tone(1.5, 1.0), tone(1.0, 0.1)
    a, b = await asyncio.gather(
        stream_pcm(stack.ws, loud, frame_ms=20, realtime=False),
        stream_pcm(stack.ws, quiet, frame_ms=40, realtime=False),
    )
    for messages, windows, rms in ((a, 3, -3.01), (b, 2, -23.01)):
        assert messages[0]["type"] == "session.started"
        assert messages[-1]["type"] == "session.ended"
        session = messages[0]["session_id"]
        assert all(m["session_id"] == session for m in messages), "a client received another session's event"
        got = levels(messages)
        assert [(m["start_ms"], m["end_ms"]) for m in got] == [(i * 500.0, (i + 1) * 500.0) for i in range(windows)]
        assert all(m["rms_dbfs"] == pytest.approx(rms, abs=0.05) for m in got)
        assert messages[-1]["duration_ms"] == windows * 500.0
    assert a[0]["session_id"] != b[0]["session_id"]


async def test_invalid_record_goes_to_dead_letter_and_worker_keeps_serving(stack: Stack) -> None:
    marker = f"garbage-{time.time_ns()}".encode()
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    producer.produce(AUDIO.name, key=b"bogus-session", value=marker)
    producer.flush(10)

    messages = await stream_pcm(stack.ws, tone(0.5, 0.5), realtime=False)
    assert messages[-1]["type"] == "session.ended"
    assert len(levels(messages)) == 1

    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"t-{time.time_ns()}"})
    consumer.assign([TopicPartition(DEAD_LETTER.name, 0, OFFSET_BEGINNING)])
    found = None
    deadline = time.monotonic() + 20
    while found is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        letter = decode(msg.value(), (DeadLetter,))
        if letter.value == marker:
            found = letter
    consumer.close()
    assert found is not None, "the invalid record never reached the dead-letter topic"
    assert found.source_topic == AUDIO.name and found.key == "bogus-session"
    assert "magic" in found.error


async def test_metrics_and_health_endpoints(stack: Stack) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{stack.http}/healthz")).status_code == 200
        ready = (await client.get(f"{stack.http}/readyz")).json()
        assert ready == {"ready": True, "checks": {"broker": True, "events_consumer": True, "workers": True}}
        body = (await client.get(f"{stack.http}/metrics")).text
        assert "moodstream_gateway_frame_ack_seconds_bucket" in body
        assert "moodstream_worker_finals_hurried{worker=" in body  # from the workers' heartbeats
        page = await client.get(f"{stack.http}/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        script = await client.get(f"{stack.http}/static/app.js")
        assert script.status_code == 200 and "/ws/analyze" in script.text


def test_results_are_json_objects_with_a_type(stack: Stack) -> None:
    messages = asyncio.run(stream_pcm(stack.ws, tone(0.6, 0.3), realtime=False))
    assert all(isinstance(m, dict) and isinstance(m.get("type"), str) for m in messages)
    json.dumps(messages)


async def test_a_replayed_result_reaches_the_client_once(stack: Stack) -> None:
    """At-least-once delivery means a fused result can be on the events topic twice (a worker that died after sending
    and before committing sends it again); the client must see each (utterance, revision) once."""
    import websockets

    from moodstream.schemas import encode
    from moodstream.schemas.records import FusedResult, FusionWeights, SentimentScores
    from moodstream.schemas.topics import EVENTS

    def result(session: str, seq: int, revision: int) -> FusedResult:
        scores = SentimentScores(negative=0.1, neutral=0.2, positive=0.7)
        return FusedResult(
            session_id=session, utterance_seq=seq, revision=revision, final=revision == 1, start_ms=0.0,
            end_ms=500.0, text="hello", text_sentiment=scores, audio_sentiment=scores, fused_score=0.6,
            fused_label="positive", weights=FusionWeights(text=0.6, audio=0.4), latencies_ms={}, model_versions={},
        )  # fmt: skip

    async with websockets.connect(stack.ws) as ws:
        await ws.send(json.dumps({"type": "start"}))
        session = json.loads(await ws.recv())["session_id"]
        producer = Producer({"bootstrap.servers": stack.bootstrap})
        for record in (result(session, 0, 0), result(session, 0, 1), result(session, 0, 1), result(session, 0, 0)):
            producer.produce(EVENTS.name, key=session.encode(), value=encode(record))
        producer.produce(EVENTS.name, key=session.encode(), value=encode(result(session, 1, 1)))
        producer.flush(10)
        received: list[tuple[int, int]] = []
        while (1, 1) not in received:
            message = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if message["type"] == "utterance":
                received.append((message["utterance_seq"], message["revision"]))
    assert received == [(0, 0), (0, 1), (1, 1)]


async def test_a_sessions_own_text_weight_reaches_fusion(stack: Stack) -> None:
    """`fusion_alpha` in the start message travels with the session's utterances to the fusion stage."""
    from pathlib import Path

    from moodstream.processors.fusion import Fuser
    from moodstream.producers.audio import load_pcm16

    speech = load_pcm16(Path(__file__).parent / "data" / "three_prompts.wav")
    voice_only, words_first = await asyncio.gather(
        stream_pcm(stack.ws, speech, realtime=False, options={"fusion_alpha": 0.0}),
        stream_pcm(stack.ws, speech, realtime=False, options={"fusion_alpha": 1.0}),
    )
    for messages in (voice_only, words_first):
        assert messages[-1]["type"] == "session.ended" and messages[-1]["utterances"] == 3
    finals = [[m for m in ms if m["type"] == "utterance" and m["final"]] for ms in (voice_only, words_first)]
    assert [len(f) for f in finals] == [3, 3]
    for result in finals[0]:  # the voice alone decides: calm as far as it is unsure and not agitated
        assert result["weights"]["text"] == 0.0 and result["weights"]["audio"] == 1.0
        assert result["arousal"] is not None and result["emotion_label"] is not None
        voice_alone = Fuser().fuse(None, result["audio_sentiment"], arousal=result["arousal"])
        assert result["fused_label"] == voice_alone.label
        assert result["weights"]["voice_commitment"] == round(voice_alone.voice_commitment, 4)
    assert all(result["weights"]["text"] > 0 for result in finals[1])


async def test_a_long_utterance_gets_live_partials_before_its_final_unless_the_session_turns_them_off(
    stack: Stack,
) -> None:
    """Read speech streamed in real time: words so far, with their sentiment, arrive while the speaker talks; the
    final supersedes them (and the voice's window scores); a session that asks for no partials gets none."""
    from pathlib import Path

    from moodstream.cli.bench.wer import wer
    from moodstream.producers.audio import load_pcm16

    speech = load_pcm16(Path(__file__).parent / "data" / "read_sentence.wav")
    live, plain = await asyncio.gather(
        stream_pcm(stack.ws, speech, realtime=True),
        stream_pcm(stack.ws, speech, realtime=True, options={"partials": False}),
    )
    assert not [m for m in plain if m["type"] == "partial"]
    assert live[-1]["type"] == "session.ended" and live[-1]["utterances"] == 2
    final_at = next(
        i for i, m in enumerate(live) if m["type"] == "utterance" and m["utterance_seq"] == 0 and m["final"]
    )
    partials = [(i, m) for i, m in enumerate(live) if m["type"] == "partial" and m["utterance_seq"] == 0]
    assert len(partials) >= 3 and all(i < final_at for i, _m in partials)  # never after the final
    windows = [i for i, m in enumerate(live) if m["type"] == "acoustic" and m["utterance_seq"] == 0]
    assert windows and all(i < final_at for i in windows)  # nor are the voice's provisional window scores
    assert [m["revision"] for _i, m in partials] == sorted({m["revision"] for _i, m in partials})
    speech_start = next(m["at_ms"] for m in live if m["type"] == "vad.speech_start" and m["utterance_seq"] == 0)
    assert partials[0][1]["end_ms"] - speech_start <= 2500
    for _i, m in partials:
        assert m["text"] and sum(m["text_sentiment"].values()) == pytest.approx(1.0, abs=1e-3)
    assert wer([live[final_at]["text"]], [partials[-1][1]["text"]]) <= 0.2


async def test_a_worker_hands_an_utterance_to_its_own_next_stages_instead_of_waiting_for_the_broker(
    stack: Stack,
) -> None:
    before = await asyncio.to_thread(latest_heartbeats, stack.bootstrap, 4.0)
    messages = await stream_pcm(stack.ws, load_pcm16(DATA / "three_prompts.wav"), realtime=False)
    finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
    assert len(finals) == 3 and messages[-1]["type"] == "session.ended"
    grew: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 20
    while not grew and time.monotonic() < deadline:  # the next heartbeat carries the counts
        after = await asyncio.to_thread(latest_heartbeats, stack.bootstrap, 4.0)
        old = {worker: (beat.handed_off, beat.finals) for worker, beat in before.items()}
        grew = {
            worker: (beat.handed_off - old.get(worker, (0, 0))[0], beat.finals - old.get(worker, (0, 0))[1])
            for worker, beat in after.items()
            if beat.finals - old.get(worker, (0, 0))[1] >= len(finals)
        }
    # each utterance at least to the ASR and acoustic stages, its text and whole-utterance scores to fusion
    assert sum(handed for handed, _started in grew.values()) >= 4 * len(finals)
    assert sum(started for _handed, started in grew.values()) == len(finals)  # the ASR counts each final it starts
