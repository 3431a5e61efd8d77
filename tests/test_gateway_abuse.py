"""The gateway under abuse, over real sockets (#41): no slot held for nothing, backpressure that keeps keepalive
working, one socket per session, oversized frames answered, and a client that never ends as if complete when it is
not. The rules themselves are unit-tested in test_gateway_session.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from moodstream.broker.embedded import free_port
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import ClientOptions, MoodstreamClient
from tests.conftest import Stack, process_env, spawn, stop, tone, wait_ready
from tests.test_gateway_errors import receive_until_closed

pytestmark = pytest.mark.stack
SPEECH = Path(__file__).parent / "data" / "three_prompts.wav"


@contextlib.asynccontextmanager
async def gateway(stack: Stack, **settings: str) -> AsyncIterator[str]:
    """A gateway of its own on the stack's broker and workers, with `settings` (MOODSTREAM_… without the prefix)."""
    port = free_port()
    env = process_env(stack.bootstrap, **{f"MOODSTREAM_{k.upper()}": v for k, v in settings.items()})
    process = spawn(["gateway", "--port", str(port)], env)
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [process])
        yield f"ws://127.0.0.1:{port}/ws/analyze"
    finally:
        stop([process])


async def start(url: str, **fields: object) -> tuple[websockets.ClientConnection, dict]:
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"type": "start", "sample_rate": 16000, **fields}))
    return ws, json.loads(await ws.recv())


async def start_when_admitted(url: str) -> tuple[websockets.ClientConnection, dict]:
    """`start`, retried while the gateway still counts a connection that is closing (its refusal may close the socket
    before the start is even sent)."""
    for _ in range(50):
        try:
            ws, first = await start(url)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1013, closed
        else:
            if first.get("code") != "client_limit":
                return ws, first
            await ws.close()
        await asyncio.sleep(0.1)
    raise AssertionError("the gateway never gave the slot back")


async def test_ping_only_and_silent_connections_give_their_slots_back(stack: Stack) -> None:
    async with gateway(stack, idle_timeout_s="1.5", start_timeout_s="1", max_sessions="2") as url:
        pinging, _ = await start(url)
        silent = await websockets.connect(url)
        for _ in range(4):  # a ping every 0.5 s is not audio: the session idles out all the same
            with contextlib.suppress(websockets.ConnectionClosed):
                await pinging.send(json.dumps({"type": "ping"}))
            await asyncio.sleep(0.5)
        # a guard, not a measurement: without the limits neither socket would ever close
        pinged = await asyncio.wait_for(receive_until_closed(pinging), 30)
        said_nothing = await asyncio.wait_for(receive_until_closed(silent), 30)
        assert [m.get("code", m["type"]) for m in pinged if m["type"] != "pong"] == ["idle_timeout", "session.ended"]
        assert pinging.close_code == 1000
        assert [(m["code"], m["fatal"]) for m in said_nothing] == [("start_timeout", True)]
        assert silent.close_code == 1008
        newcomer, started = await start(url)  # both slots are free again
        assert started["type"] == "session.started"
        await newcomer.close()


async def test_one_client_address_holds_at_most_its_limit(stack: Stack) -> None:
    async with gateway(stack, max_sessions_per_client="2") as url:
        first, _ = await start(url)
        second, _ = await start(url)
        third = await websockets.connect(url)
        refused = await receive_until_closed(third)
        assert [(m["code"], m["fatal"]) for m in refused] == [("client_limit", True)] and third.close_code == 1013
        await first.close()
        fourth, started = await start_when_admitted(url)  # once the gateway has let the first one go
        assert started["type"] == "session.started"
        await second.close()
        await fourth.close()


async def test_a_handshake_sent_a_byte_at_a_time_is_cut_off(stack: Stack) -> None:
    async with gateway(stack, handshake_timeout_s="1") as url:
        port = int(url.split(":")[2].split("/")[0])
        request = b"GET /ws/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        cut = False  # the headers never end (no blank line): only a deadline closes the connection
        for byte in request:
            writer.write(bytes([byte]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.25) == b"":
                    cut = True
                    break
            except TimeoutError:
                continue
        writer.close()
        assert cut


async def test_a_client_far_faster_than_admitted_is_warned_then_closed_and_its_keepalive_answered(stack: Stack) -> None:
    async with gateway(stack, max_realtime_factor="2", burst_s="1", max_ahead_s="2") as url:
        ws = await websockets.connect(url, ping_interval=0.2, ping_timeout=1.0)
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        assert json.loads(await ws.recv())["max_realtime_factor"] == 2.0
        frame = tone(0.02, 0.3)
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(1000):  # 20 s of audio as fast as the socket takes it
                await ws.send(frame)
        messages = await receive_until_closed(ws)
        errors = [(m["code"], m["fatal"]) for m in messages if m["type"] == "error"]
        assert errors == [("too_fast", False), ("too_fast", True)]
        assert ws.close_code == 1008  # the documented close, never a keepalive timeout (1011)


async def test_a_paced_fast_client_is_never_warned(stack: Stack) -> None:
    async with gateway(stack, max_realtime_factor="8", burst_s="1", max_ahead_s="1") as url:
        async with MoodstreamClient(url) as client:
            sender = asyncio.create_task(client.stream(tone(6.0, 0.2), realtime=False))
            messages = [m async for m in client.messages()]
            await sender
        assert not [m for m in messages if m["type"] == "error"]
        assert messages[-1]["type"] == "session.ended"


async def test_frames_over_64_kb_get_frame_too_large(stack: Stack) -> None:
    for payload in (bytes(100_000), "x" * 100_000):
        ws, _ = await start(stack.ws)
        await ws.send(payload)
        messages = await receive_until_closed(ws)
        assert [(m["code"], m["fatal"]) for m in messages if m["type"] == "error"] == [("frame_too_large", True)]
        assert ws.close_code == 1009


async def test_a_resume_on_another_gateway_takes_the_session_over(stack: Stack) -> None:
    async with gateway(stack, resume_secret="shared") as one, gateway(stack, resume_secret="shared") as other:
        first, started = await start(one)
        await first.send(tone(0.02, 0.3))
        second, resumed = await start(other, resume_token=started["resume_token"], resume_from_sample=8000)
        assert resumed["resumed"] and resumed["session_id"] == started["session_id"]
        taken = await receive_until_closed(first)
        assert [(m["code"], m["fatal"]) for m in taken if m["type"] == "error"] == [("session_taken_over", True)]
        assert first.close_code == 1008
        for i in range(0, 16000, 640):  # the session goes on over the second socket alone
            await second.send(tone(0.5, 0.3)[i : i + 640])
        await second.send(json.dumps({"type": "end"}))
        rest = await receive_until_closed(second)
        assert rest[-1]["type"] == "session.ended" and second.close_code == 1000
        assert not [m for m in rest if m["type"] == "error"]


async def test_results_late_after_end_are_fetched_by_resuming(stack: Stack) -> None:
    speech = load_pcm16(SPEECH)[: 16_000 * 2 * 15 // 2]  # 7.5 s: ends inside a sentence, decoded only after `end`
    async with gateway(stack, session_end_grace_s="0.05") as url:
        client = MoodstreamClient(url, ClientOptions(backoff_s=0.05, max_resumes_after_end=50))
        await client.connect()
        sender = asyncio.create_task(client.stream(speech, realtime=False))
        messages = [m async for m in client.messages()]
        await sender
        await client.close()
    ended = messages[-1]
    assert ended["type"] == "session.ended" and ended["utterances"] >= 1
    finals = {m["utterance_seq"] for m in messages if m["type"] == "utterance" and m["final"]}
    assert finals == set(range(ended["utterances"]))
    late = [m for m in messages if m["type"] == "error" and m["code"] == "results_late"]
    assert late and not any(m["fatal"] for m in late) and client.resumes >= 1


async def test_a_client_that_cannot_resume_fails_naming_the_audio_without_results(stack: Stack) -> None:
    port = free_port()
    process = spawn(["gateway", "--port", str(port)], process_env(stack.bootstrap))
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [process])
        client = MoodstreamClient(f"ws://127.0.0.1:{port}/ws/analyze", ClientOptions(max_reconnects=2, backoff_s=0.1))
        await client.connect()
        sender = asyncio.create_task(client.stream(load_pcm16(SPEECH)))  # real time: 12 s
        await asyncio.sleep(2.0)
        process.kill()  # gone for good: every resume is refused at the TCP level
        messages = [m async for m in client.messages()]
        sender.cancel()
        await client.close()
    finally:
        stop([process])
    last = messages[-1]
    assert (last["type"], last["code"], last["fatal"]) == ("error", "disconnected", True)
    assert " s sent) may have none" in last["message"]  # what was sent, and from where it has no result
    assert not [m for m in messages if m["type"] == "session.ended"]
