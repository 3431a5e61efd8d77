"""Two gateway instances side by side on one broker; fast clients are throttled; optional WAV recording."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

from moodstream.broker import free_port
from producers.client import stream_pcm
from tests.conftest import Stack, process_env, spawn, stop, tone, wait_ready


async def test_second_instance_isolates_sessions_throttles_and_records(stack: Stack, tmp_path: Path) -> None:
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
        started = time.monotonic()
        first_gateway, second_gateway = await asyncio.gather(
            stream_pcm(stack.ws, quiet, realtime=False),
            stream_pcm(f"ws://127.0.0.1:{port}/ws/analyze", loud, realtime=False),
        )
        for messages, windows in ((first_gateway, 3), (second_gateway, 6)):
            session = messages[0]["session_id"]
            assert all(m["session_id"] == session for m in messages), "a session saw another session's data"
            assert len([m for m in messages if m["type"] == "level"]) == windows
            assert messages[-1]["type"] == "session.ended"
        # 3 s of audio at most 2x real time after a 0.5 s burst: the server cannot have taken it in under 1.25 s
        assert time.monotonic() - started >= 1.25
        recorded = tmp_path / f"{second_gateway[0]['session_id']}.wav"
        with wave.open(str(recorded)) as handle:
            assert (handle.getframerate(), handle.getnchannels()) == (16000, 1)
            assert handle.readframes(handle.getnframes()) == loud
        assert list(tmp_path.iterdir()) == [recorded]  # the other instance records nothing
    finally:
        stop([second])
