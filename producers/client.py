"""Minimal async streaming client for ``/ws/analyze`` (the richer MoodstreamClient builds on it)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import websockets

from producers.audio import SAMPLE_RATE, frames

DEFAULT_URL = "ws://127.0.0.1:8000/ws/analyze"


async def stream_pcm(
    url: str,
    pcm: bytes,
    *,
    frame_ms: int = 20,
    realtime: bool = True,
    options: dict | None = None,
    on_message: Callable[[dict], None] | None = None,
    headers: dict[str, str] | None = None,
) -> list[dict]:
    """Stream PCM as binary frames, send ``end``, and return every server message until the server closes."""
    messages: list[dict] = []
    async with websockets.connect(url, max_size=2**22, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": SAMPLE_RATE, "options": options or {}}))

        async def receive() -> None:
            async for raw in ws:
                message = json.loads(raw)
                messages.append(message)
                if on_message:
                    on_message(message)

        receiver = asyncio.create_task(receive())
        started = time.monotonic()
        for index, frame in enumerate(frames(pcm, frame_ms)):
            if realtime:
                delay = started + index * frame_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(frame)
        await ws.send(json.dumps({"type": "end"}))
        try:
            await receiver
        except websockets.ConnectionClosed:
            pass
    return messages
