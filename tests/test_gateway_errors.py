"""Bad input gets a documented error and never touches another session."""

from __future__ import annotations

import asyncio
import json

import websockets

from moodstream.broker.embedded import free_port
from tests.conftest import Stack, process_env, spawn, stop, tone, wait_ready


async def receive_until_closed(ws: websockets.ClientConnection) -> list[dict]:
    messages = []
    try:
        async for raw in ws:
            messages.append(json.loads(raw))
    except websockets.ConnectionClosed:
        pass
    return messages


async def test_bad_text_and_odd_frames_are_reported_and_the_session_goes_on(stack: Stack) -> None:
    async with websockets.connect(stack.ws) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        assert json.loads(await ws.recv())["type"] == "session.started"
        await ws.send("this is not json")
        error = json.loads(await ws.recv())
        assert (error["type"], error["code"], error["fatal"]) == ("error", "bad_message", False)
        await ws.send(json.dumps({"type": "dance"}))
        assert json.loads(await ws.recv())["code"] == "bad_message"
        await ws.send(b"\x01\x02\x03")
        assert json.loads(await ws.recv())["code"] == "odd_frame"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
        pcm = tone(0.5, 0.5)
        for i in range(0, len(pcm), 640):
            await ws.send(pcm[i : i + 640])
        await ws.send(json.dumps({"type": "end"}))
        rest = await receive_until_closed(ws)
    assert [m["type"] for m in rest] == ["level", "session.ended"]
    assert ws.close_code == 1000


async def test_oversized_frame_closes_with_1009(stack: Stack) -> None:
    async with websockets.connect(stack.ws) as ws:
        await ws.send(json.dumps({"type": "start"}))
        await ws.recv()
        await ws.send(bytes(6402))  # 200 ms is 6400 bytes
        messages = await receive_until_closed(ws)
    assert messages[-1]["code"] == "frame_too_large" and messages[-1]["fatal"] is True
    assert ws.close_code == 1009


async def test_wrong_sample_rate_closes_with_1003(stack: Stack) -> None:
    async with websockets.connect(stack.ws) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 8000}))
        messages = await receive_until_closed(ws)
    assert [m["code"] for m in messages] == ["bad_start"]
    assert "16000" in messages[0]["message"]
    assert ws.close_code == 1003
    async with websockets.connect(stack.ws) as ws:  # the rate as a string is not taken for the number (#41 item 5)
        await ws.send(json.dumps({"type": "start", "sample_rate": "16000"}))
        messages = await receive_until_closed(ws)
    assert [m["code"] for m in messages] == ["bad_start"] and ws.close_code == 1003


async def test_a_language_no_model_serves_is_refused_with_1003(stack: Stack) -> None:
    async with websockets.connect(stack.ws) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"language": "de"}}))
        messages = await receive_until_closed(ws)
    assert [m["code"] for m in messages] == ["bad_start"]
    assert "language" in messages[0]["message"]
    assert ws.close_code == 1003


async def test_over_capacity_is_refused_with_1013_and_the_open_session_is_unharmed(stack: Stack) -> None:
    port = free_port()
    gateway = spawn(["gateway", "--port", str(port)], process_env(stack.bootstrap, MOODSTREAM_MAX_SESSIONS="1"))
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [gateway])
        url = f"ws://127.0.0.1:{port}/ws/analyze"
        async with websockets.connect(url) as first:
            await first.send(json.dumps({"type": "start"}))
            started = json.loads(await first.recv())
            async with websockets.connect(url) as second:
                refused = await receive_until_closed(second)
            assert second.close_code == 1013
            assert [(m["type"], m["code"], m["fatal"]) for m in refused] == [("error", "over_capacity", True)]
            pcm = tone(0.5, 0.5)
            for i in range(0, len(pcm), 640):
                await first.send(pcm[i : i + 640])
            await first.send(json.dumps({"type": "end"}))
            rest = await receive_until_closed(first)
        assert [m["type"] for m in rest] == ["level", "session.ended"]
        assert all(m["session_id"] == started["session_id"] for m in rest)
    finally:
        stop([gateway])


def test_a_session_remembers_only_its_latest_event_identities() -> None:
    from moodstream.gateway.session import RecentIdentities

    seen = RecentIdentities(3)
    for n in range(5):
        seen.add(("level", n))
    assert ("level", 4) in seen and ("level", 2) in seen and ("level", 1) not in seen
    seen.discard(("level", 4))
    assert ("level", 4) not in seen
