"""The gateway when a client vanishes mid-utterance, and when the broker goes away."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import websockets

from moodstream.broker.embedded import EmbeddedBroker, ensure_topics, free_port
from moodstream.producers.audio import load_pcm16
from moodstream.schemas.records import FusedResult
from moodstream.schemas.topics import EVENTS
from tests.conftest import Stack, process_env, read_session_records, spawn, stop, wait_ready

SPEECH = load_pcm16(Path(__file__).parent / "data" / "three_prompts.wav")


async def test_client_gone_mid_utterance_still_gets_its_result_on_the_topic(stack: Stack) -> None:
    async with websockets.connect(stack.ws) as ws:
        await ws.send(json.dumps({"type": "start"}))
        session = json.loads(await ws.recv())["session_id"]
        cut = 16000 * 2 * 5  # 5 s: inside the long second prompt (speech 2.7 s – 8.1 s)
        for i in range(0, cut, 640):
            await ws.send(SPEECH[i : i + 640])
        await asyncio.sleep(0.3)
    # the socket is gone; the partial utterance must still be processed and its result kept
    deadline, finals = time.monotonic() + 45, []
    while time.monotonic() < deadline and len(finals) < 2:
        records = await asyncio.to_thread(read_session_records, stack.bootstrap, EVENTS, session, None, 10.0)
        finals = sorted({r.utterance_seq for r in records if isinstance(r, FusedResult) and r.final})
    assert finals == [0, 1], "the utterance cut short by the disconnect was not processed"
    partial = next(r for r in records if isinstance(r, FusedResult) and r.utterance_seq == 1)
    assert partial.text.startswith("That agent is already")


@pytest.mark.stack  # starts its own processes
async def test_broker_outage_is_reported_and_new_sessions_refused() -> None:
    broker = EmbeddedBroker().start()
    ensure_topics({"bootstrap.servers": broker.bootstrap})
    env = process_env(broker.bootstrap)
    port = free_port()
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway", "--port", str(port)], env)
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [worker, gateway])
        url = f"ws://127.0.0.1:{port}/ws/analyze"
        async with websockets.connect(url) as open_session:
            await open_session.send(json.dumps({"type": "start"}))
            assert json.loads(await open_session.recv())["type"] == "session.started"
            broker.stop()
            told = None
            deadline = time.monotonic() + 20
            while told is None and time.monotonic() < deadline:
                await open_session.send(bytes(640))
                try:
                    message = json.loads(await asyncio.wait_for(open_session.recv(), 0.2))
                except TimeoutError:
                    continue
                if message.get("code") == "broker_unavailable":
                    told = message
            assert told is not None and told["fatal"] is False, "the open session was not told"
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] is False
        async with websockets.connect(url) as refused:
            try:
                message = json.loads(await asyncio.wait_for(refused.recv(), 10))
                await refused.wait_closed()
            except websockets.ConnectionClosed:
                message = {}
        assert message.get("code") == "broker_unavailable" and refused.close_code == 1013
        assert gateway.poll() is None, "the gateway must survive a broker outage"
    finally:
        stop([gateway, worker])
        broker.stop()
