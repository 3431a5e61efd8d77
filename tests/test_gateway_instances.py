"""Two gateway instances side by side on one broker; throttling, WAV recording, idle and duration limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import wave
from pathlib import Path

import websockets

from moodstream.broker.embedded import free_port
from moodstream.producers.client import stream_pcm
from tests.conftest import Stack, process_env, spawn, stop, tone, wait_ready


async def test_second_instance_isolates_sessions_warns_the_fast_and_records(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = process_env(
        stack.bootstrap,
        MOODSTREAM_RECORD_DIR=str(tmp_path),
        MOODSTREAM_MAX_REALTIME_FACTOR="2",
        MOODSTREAM_BURST_S="0.5",
    )
    second = spawn(["gateway", "--port", str(port)], env)
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [second])
        loud, quiet = tone(3.0, 1.0), tone(1.5, 0.1)
        first_gateway, second_gateway = await asyncio.gather(
            stream_pcm(stack.ws, quiet, realtime=False),
            stream_pcm(f"ws://127.0.0.1:{port}/ws/analyze", loud, realtime=False),
        )
        for messages, windows in ((first_gateway, 3), (second_gateway, 6)):
            session = messages[0]["session_id"]
            about_sessions = [m for m in messages if m["type"] != "error"]
            assert all(m["session_id"] == session for m in about_sessions), "a session saw another session's data"
            assert len([m for m in messages if m["type"] == "level"]) == windows
            assert messages[-1]["type"] == "session.ended"
        # 3 s of audio at once, beyond 2× real time after a 0.5 s burst: warned (not fatal), never slowed by unread
        # sockets, and within max_ahead_s every sample is taken
        warnings = [m for m in second_gateway if m["type"] == "error"]
        assert [(m["code"], m["fatal"]) for m in warnings] == [("too_fast", False)]
        assert not [m for m in first_gateway if m["type"] == "error"]
        recorded = tmp_path / f"{second_gateway[0]['session_id']}.wav"
        with wave.open(str(recorded)) as handle:
            assert (handle.getframerate(), handle.getnchannels()) == (16000, 1)
            assert handle.readframes(handle.getnframes()) == loud
        assert list(tmp_path.iterdir()) == [recorded]  # the other instance records nothing
    finally:
        stop([second])


async def test_idle_and_overlong_sessions_are_ended_normally(stack: Stack) -> None:
    port = free_port()
    env = process_env(stack.bootstrap, MOODSTREAM_IDLE_TIMEOUT_S="1", MOODSTREAM_MAX_SESSION_S="2.5")
    gateway = spawn(["gateway", "--port", str(port)], env)
    url = f"ws://127.0.0.1:{port}/ws/analyze"

    async def session(seconds_of_audio: float) -> tuple[list[dict], int | None]:
        messages: list[dict] = []
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            frame = tone(0.02, 0.1)
            for _ in range(int(seconds_of_audio / 0.02)):
                try:
                    await ws.send(frame)
                except websockets.ConnectionClosed:
                    break
                await asyncio.sleep(0.02)
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    messages.append(json.loads(raw))
        return messages, ws.close_code

    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [gateway])
        (idle, idle_code), (long, long_code) = await asyncio.gather(session(0.5), session(6.0))
        for messages, code, reason in ((idle, idle_code, "idle"), (long, long_code, "max_duration")):
            errors = [m["code"] for m in messages if m["type"] == "error"]
            assert errors == [{"idle": "idle_timeout", "max_duration": "max_duration"}[reason]]
            assert messages[-1]["type"] == "session.ended" and messages[-1]["reason"] == reason
            assert code == 1000
        assert max(m["end_ms"] for m in long if m["type"] == "level") <= 2600  # nothing taken after the limit
    finally:
        stop([gateway])
