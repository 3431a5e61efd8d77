"""MoodstreamClient against real processes: it survives gateway restarts without losing or repeating an utterance."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from moodstream.broker.embedded import free_port
from moodstream.cli.bench.wer import normalize
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import ClientOptions, MoodstreamClient, SessionFailed
from tests.conftest import Stack, process_env, spawn, stop, wait_ready

DATA = Path(__file__).parent / "data"
SPEECH = load_pcm16(DATA / "three_prompts.wav")
TRUTH = json.loads((DATA / "three_prompts.json").read_text())


def start_gateway(stack: Stack, port: int):
    env = process_env(stack.bootstrap, MOODSTREAM_RESUME_SECRET="test-resume-secret")
    process = spawn(["gateway", "--port", str(port)], env)
    wait_ready(f"http://127.0.0.1:{port}", [process])
    return process


async def test_client_resumes_across_gateway_crash_and_restart(stack: Stack) -> None:
    port = free_port()
    gateway = await asyncio.to_thread(start_gateway, stack, port)
    try:
        url = f"ws://127.0.0.1:{port}/ws/analyze"
        async with MoodstreamClient(url, ClientOptions(backoff_s=0.1)) as client:
            session_id = client.session_id
            sender = asyncio.create_task(client.stream(SPEECH))
            await asyncio.sleep(4.5)  # inside the second prompt (2.7–8.1 s)
            gateway.send_signal(signal.SIGKILL)
            gateway.wait()
            gateway = await asyncio.to_thread(start_gateway, stack, port)
            messages = [m async for m in client.messages()]
            await sender
        assert client.resumes == 1 and client.session_id == session_id
        finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
        assert [normalize(m["text"]) for m in finals] == [normalize(p["text"]) for p in TRUTH]
        assert [m["utterance_seq"] for m in finals] == [0, 1, 2]
        assert messages[-1]["type"] == "session.ended"
        assert all(m["session_id"] == session_id for m in messages if "session_id" in m)
        final_at = {m["utterance_seq"]: i for i, m in enumerate(messages) if m["type"] == "utterance" and m["final"]}
        partials = [(i, m) for i, m in enumerate(messages) if m["type"] == "partial"]
        assert partials and all(i < final_at[m["utterance_seq"]] for i, m in partials)  # none after its final
        for seq in {m["utterance_seq"] for _i, m in partials}:  # each newer than the last shown, across the resume
            revisions = [m["revision"] for _i, m in partials if m["utterance_seq"] == seq]
            assert revisions == sorted(set(revisions))
    finally:
        stop([gateway])


async def test_graceful_restart_splits_the_open_utterance_but_loses_and_repeats_nothing(stack: Stack) -> None:
    port = free_port()
    gateway = await asyncio.to_thread(start_gateway, stack, port)
    try:
        url = f"ws://127.0.0.1:{port}/ws/analyze"
        async with MoodstreamClient(url, ClientOptions(backoff_s=0.1)) as client:
            sender = asyncio.create_task(client.stream(SPEECH))
            await asyncio.sleep(4.5)
            stop([gateway])  # SIGTERM: uvicorn closes sockets with 1012, the open utterance is finished early
            gateway = await asyncio.to_thread(start_gateway, stack, port)
            messages = [m async for m in client.messages()]
            await sender
        assert client.resumes == 1
        finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
        seqs = [m["utterance_seq"] for m in finals]
        assert seqs == list(range(len(seqs))) and len(seqs) >= 3, seqs
        assert not [key for key, n in Counter(json.dumps(m, sort_keys=True) for m in messages).items() if n > 1]
        assert normalize(finals[0]["text"]) == normalize(TRUTH[0]["text"])
        assert normalize(finals[-1]["text"]) == normalize(TRUTH[2]["text"])
        ended = [m for m in messages if m["type"] == "session.ended"]
        assert len(ended) == 1 and ended[0]["reason"] == "client" and ended[0]["utterances"] == len(seqs)
    finally:
        stop([gateway])


async def test_a_forged_resume_token_is_refused(stack: Stack) -> None:
    client = MoodstreamClient(stack.ws)
    client._token = "0123456789abcdef0123456789abcdef.forged"
    with pytest.raises(SessionFailed, match="1008: bad_resume"):
        await client.connect()
