"""The audio stage over a real broker: VAD events to the client, utterances and acoustic windows to their topics,
and no utterance lost or doubled when the worker is killed in the middle of one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from moodstream.broker.embedded import EmbeddedBroker, ensure_topics, free_port
from moodstream.broker.generations import Generations
from moodstream.broker.rotation import TopicKeeper, generation_specs
from moodstream.cli.bench.wer import normalize
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import stream_pcm
from moodstream.schemas.records import AcousticWindow, PartialTranscript, TextScore, Transcript, Utterance
from moodstream.schemas.topics import ACOUSTIC_WINDOWS, CHECKPOINTS, TEXT_SCORES, TRANSCRIPTS, UTTERANCES
from moodstream.settings import Settings
from tests.conftest import Stack, process_env, read_session_records, spawn, stop, wait_ready, write_call_wav

DATA = Path(__file__).parent / "data"
SPEECH = load_pcm16(DATA / "three_prompts.wav")
TRUTH = json.loads((DATA / "three_prompts.json").read_text())
TRANSCRIPTS_TEXT = [
    "Goodbye!",
    "That agent is already logged on. Please enter your agent number followed by the pound key.",
    "There are currently.",
]
"""What Whisper tiny.en (int8, this project's decoding) writes for the three prompts. Its punctuation may differ where
the model runs in onnxruntime ("Goodbye." for "Goodbye!"): tests compare words (`assert_same_words`)."""


def assert_same_words(finals: dict[int, str]) -> None:
    """The finals have the prompts' words (case and punctuation aside). After a takeover the replacement may cut an
    utterance again from replayed audio with its VAD started afresh there: the cut moves by tens of ms, which can
    change Whisper's punctuation ("Goodbye." for "Goodbye!") but not its words; audio lost from an utterance drops
    words."""
    assert [normalize(finals[seq]) for seq in sorted(finals)] == [normalize(t) for t in TRANSCRIPTS_TEXT], finals


def vad_events(messages: list[dict]) -> list[tuple[str, int]]:
    return [(m["type"], m["utterance_seq"]) for m in messages if m["type"].startswith("vad.")]


def assert_utterances_match_truth(utterances: list[Utterance]) -> None:
    by_seq = {u.utterance_seq: u for u in utterances}
    assert sorted(by_seq) == [0, 1, 2]
    for seq, truth in enumerate(TRUTH):
        start_ms, end_ms = truth["speech_ms"]
        assert abs(by_seq[seq].start_ms - start_ms) <= 200 and abs(by_seq[seq].end_ms - end_ms) <= 200
        assert len(by_seq[seq].pcm) // 32 >= end_ms - start_ms  # the PCM covers the speech


async def test_speech_yields_vad_events_utterances_and_acoustic_windows(stack: Stack) -> None:
    messages = await stream_pcm(stack.ws, SPEECH, frame_ms=40, realtime=False)
    session = messages[0]["session_id"]
    assert vad_events(messages) == [
        ("vad.speech_start", 0), ("vad.speech_end", 0),
        ("vad.speech_start", 1), ("vad.speech_end", 1),
        ("vad.speech_start", 2), ("vad.speech_end", 2),
    ]  # fmt: skip
    assert messages[-1]["type"] == "session.ended" and messages[-1]["utterances"] == 3
    results = [m for m in messages if m["type"] == "utterance" and m["final"]]
    assert [r["utterance_seq"] for r in results] == [0, 1, 2]
    assert_same_words({r["utterance_seq"]: r["text"] for r in results})  # the engine's punctuation may differ
    for r in results:
        assert r["fused_label"] in ("negative", "neutral", "positive") and -1 <= r["fused_score"] <= 1
        assert r["weights"]["text"] + r["weights"]["audio"] == pytest.approx(1.0)
        assert set(r["model_versions"]) == {"acoustic", "asr", "text", "voice"}
        assert r["model_versions"]["voice"].startswith("voice-head-")
        assert r["audio_sentiment"] is not None and r["text_sentiment"] is not None
        assert 0 <= r["arousal"] <= 1 and r["emotion_label"] in ("angry", "happy", "sad", "neutral")
    provisional = [m for m in messages if m["type"] == "acoustic"]
    assert {m["utterance_seq"] for m in provisional} == {0, 1, 2}
    assert all(0 <= m["arousal"] <= 1 for m in provisional)  # each window's arousal from its prosody
    assert messages.index(provisional[0]) < messages.index(results[0])
    utterances = await asyncio.to_thread(read_session_records, stack.bootstrap, UTTERANCES, session, (Utterance,))
    assert_utterances_match_truth(utterances)
    assert len(utterances) == 3
    windows = await asyncio.to_thread(
        read_session_records, stack.bootstrap, ACOUSTIC_WINDOWS, session, (AcousticWindow,)
    )
    assert {w.utterance_seq for w in windows} == {0, 1, 2}
    assert all(len(w.pcm) == 16000 for w in windows)
    # The topic carries partial transcripts too (decoded while the user still speaks, when the worker has time).
    on_topic = await asyncio.to_thread(
        read_session_records, stack.bootstrap, TRANSCRIPTS, session, (Transcript, PartialTranscript), 30.0
    )
    transcripts = [t for t in on_topic if isinstance(t, Transcript)]
    assert [t.text for t in sorted(transcripts, key=lambda t: t.utterance_seq)] == [r["text"] for r in results]
    scores = await asyncio.to_thread(read_session_records, stack.bootstrap, TEXT_SCORES, session, (TextScore,), 30.0)
    assert sorted(s.utterance_seq for s in scores) == [0, 1, 2] and all(s.has_text for s in scores)


async def wait_until_checkpoints_carried(keeper: TopicKeeper, generations: Generations, since: int) -> None:
    """Until the keeper has moved on from every checkpoint slot written up to generation `since`: whatever the killed
    worker checkpointed is then only in the slot it was carried to."""
    names = generations.names(CHECKPOINTS)
    while not any(keeper.emptied.get(name, -1) >= since for name in names):
        await asyncio.sleep(0.2)


@dataclass
class OneWorkerStack:
    """A broker (with its keeper when topics rotate), one worker and a gateway, as real processes."""

    bootstrap: str
    generations: Generations
    keeper: TopicKeeper | None
    env: dict[str, str]
    url: str
    first: subprocess.Popen[bytes]
    started: list[subprocess.Popen[bytes]]

    def kill_first(self) -> None:
        self.first.send_signal(signal.SIGKILL)
        self.first.wait()

    def replace(self) -> None:
        self.started.append(spawn(["worker"], self.env))

    def stream(self) -> asyncio.Task[list[dict]]:
        return asyncio.create_task(stream_pcm(f"ws://{self.url}/ws/analyze", SPEECH, frame_ms=20, realtime=True))


@contextlib.asynccontextmanager
async def one_worker_stack(rotation_s: float, **settings: str) -> AsyncIterator[OneWorkerStack]:
    generations = Generations(rotation_s)
    with EmbeddedBroker() as broker:
        config = {"bootstrap.servers": broker.bootstrap}
        ensure_topics(config, generation_specs(generations))
        keeper = TopicKeeper(config, generations, Settings().resume_ttl_s).start() if generations.enabled else None
        # The gateway's grace after the client's end must outlast a test's own delay before the replacement, plus
        # the replacement's model load and group join (on a slow 2-core box past the 20 s default).
        grace_s = str(60.0 if generations.enabled else Settings().session_end_grace_s)
        env = process_env(
            broker.bootstrap,
            MOODSTREAM_TOPIC_ROTATION_S=str(rotation_s),
            MOODSTREAM_SESSION_END_GRACE_S=grace_s,
            **settings,
        )
        port = free_port()
        first = spawn(["worker"], env)
        started = [spawn(["gateway", "--port", str(port)], env), first]
        try:
            await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", started)
            yield OneWorkerStack(broker.bootstrap, generations, keeper, env, f"127.0.0.1:{port}", first, started)
        finally:
            stop(started)
            if keeper:
                keeper.stop()


def final_texts(messages: list[dict]) -> dict[int, str]:
    return {m["utterance_seq"]: m["text"] for m in messages if m["type"] == "utterance" and m["final"]}


@pytest.mark.stack  # starts its own processes
async def test_a_stack_without_the_meter_and_the_live_voice_still_sends_every_result_with_its_voice() -> None:
    async with one_worker_stack(0.0, MOODSTREAM_LEVEL_WINDOW_MS="0", MOODSTREAM_LIVE_VOICE="false") as stack:
        messages = await asyncio.wait_for(stack.stream(), 90)
    kinds = {m["type"] for m in messages}
    assert "level" not in kinds and "acoustic" not in kinds  # no meter, no provisional voice
    assert ("vad.speech_end", 2) in vad_events(messages)
    finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
    assert sorted(m["utterance_seq"] for m in finals) == [0, 1, 2]
    assert_same_words({m["utterance_seq"]: m["text"] for m in finals})
    assert all(m["audio_sentiment"] and m["arousal"] is not None for m in finals)  # the voice of each utterance


@pytest.mark.parametrize("rotation_s", [0.0, 8.0], ids=["fixed-topics", "rotating-topics"])
@pytest.mark.stack  # starts its own processes
async def test_worker_killed_mid_utterance_loses_nothing_and_client_sees_no_duplicate(rotation_s: float) -> None:
    """With rotating topics, the replacement starts only once the checkpoint slot the killed worker wrote to was
    emptied: it resumes from the checkpoint the keeper carried forward."""
    async with one_worker_stack(rotation_s) as stack:
        client = stack.stream()
        await asyncio.sleep(5.0)  # inside the long second prompt (speech 2.7 s – 8.1 s)
        stack.kill_first()
        if stack.keeper:
            carried = wait_until_checkpoints_carried(stack.keeper, stack.generations, stack.generations.current())
            await asyncio.wait_for(carried, 30)
        stack.replace()
        messages = await asyncio.wait_for(client, 90)
        events = vad_events(messages)
        assert sorted(set(events)) == sorted(events), "the client saw a duplicate"
        assert {seq for _type, seq in events} == {0, 1, 2}
        assert ("vad.speech_end", 1) in events and ("vad.speech_end", 2) in events
        assert messages[-1]["type"] == "session.ended" and messages[-1]["utterances"] == 3
        finals = final_texts(messages)
        assert sorted(finals) == [0, 1, 2], "a result was lost or delivered twice"
        assert_same_words(finals)  # no utterance lost part of its audio
        if not stack.keeper:  # (rotating: the utterances' slots may be emptied by now)
            session = messages[0]["session_id"]
            utterances = await asyncio.to_thread(
                read_session_records, stack.bootstrap, UTTERANCES, session, (Utterance,)
            )
            assert_utterances_match_truth(utterances)  # every utterance there, none renumbered


@pytest.mark.stack  # starts its own processes
async def test_worker_killed_while_both_parties_of_a_call_speak_loses_nothing_and_summarises_all(
    tmp_path: Path,
) -> None:
    """6 s into the call both parties have an utterance open (the agent's long prompt, the customer's sentence): the
    replacement resumes each channel from its own position and the fusion stage's tally from the one stored."""
    call = tmp_path / "call.wav"
    write_call_wav(call)
    stereo = load_pcm16(call, channels=2)
    options = {"channels": 2, "roles": ["agent", "customer"]}
    async with one_worker_stack(0.0) as stack:
        url = f"ws://{stack.url}/ws/analyze"
        client = asyncio.create_task(stream_pcm(url, stereo, frame_ms=20, realtime=True, options=options))
        await asyncio.sleep(6.0)
        stack.kill_first()
        stack.replace()
        messages = await asyncio.wait_for(client, 120)
    finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
    assert sorted(m["utterance_seq"] for m in finals) == [0, 1, 2, 3, 4], "a result was lost or delivered twice"
    assert [m["role"] for m in sorted(finals, key=lambda m: m["utterance_seq"])] == ["agent", "customer"] * 2 + [
        "agent"
    ]
    ended = messages[-1]
    assert ended["type"] == "session.ended" and ended["channel_utterances"] == [3, 2]
    assert [p["utterances"] for p in ended["summary"]["parties"]] == [3, 2]


@pytest.mark.stack  # starts its own processes
async def test_a_replacement_two_generations_behind_reads_the_older_slot_first() -> None:
    """The killed worker's unread audio spans two generations, and its replacement starts reading in the generation
    after them: the slot the clock calls current still holds the oldest records (the keeper could not empty it), and
    they must come before the other slot's, or the replacement starts the session at the later audio and the
    utterance in between is lost."""
    async with one_worker_stack(8.0) as stack:
        generations = stack.generations
        # the switch to the next generation falls 9.2 s into the stream: after the second prompt's end (8.1 s),
        # before the third's start (9.5 s)
        switch = generations.starts_at(generations.current(time.time() + 9.2) + 1)
        await asyncio.sleep(switch - 9.2 - time.time())
        client = stack.stream()
        await asyncio.sleep(5.0)  # inside the second prompt, one generation before the switch
        stack.kill_first()
        await asyncio.sleep(switch + generations.period_s + 0.5 - time.time())  # the generation after the next
        stack.replace()
        messages = await asyncio.wait_for(client, 90)
        assert_same_words(final_texts(messages))
        assert messages[-1]["type"] == "session.ended" and messages[-1]["utterances"] == 3


@pytest.mark.stack  # starts its own processes
async def test_partitions_move_to_the_survivor_and_back_without_loss_or_duplicates() -> None:
    """Two workers, one session on each (the gateway places them); one worker is killed mid-utterance and restarted:
    the survivor takes its partitions over, then hands them back to the replacement, both without waiting for the
    frames it holds unacked, and both sessions still get every result exactly once."""
    with EmbeddedBroker() as broker:
        ensure_topics({"bootstrap.servers": broker.bootstrap})
        env = process_env(broker.bootstrap)
        port = free_port()
        workers = [spawn(["worker"], env), spawn(["worker"], env)]
        gateway = spawn(["gateway", "--port", str(port)], env)
        try:
            await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [*workers, gateway])
            await asyncio.sleep(2.5)  # a heartbeat from each worker, so the gateway can place one session on each
            url = f"ws://127.0.0.1:{port}/ws/analyze"
            clients = [asyncio.create_task(stream_pcm(url, SPEECH, frame_ms=20, realtime=True)) for _ in range(2)]
            await asyncio.sleep(5.0)  # inside the long second prompt
            workers[1].send_signal(signal.SIGKILL)
            workers[1].wait()
            await asyncio.sleep(8.0)  # the survivor owns everything now, holding the open utterances' frames
            workers.append(spawn(["worker"], env))
            for messages in await asyncio.wait_for(asyncio.gather(*clients), 120):
                finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
                assert sorted(m["utterance_seq"] for m in finals) == [0, 1, 2], [
                    (m["utterance_seq"], m["start_ms"], m["end_ms"], m["text"]) for m in finals
                ] + vad_events(messages)
                assert_same_words({m["utterance_seq"]: m["text"] for m in finals})
                assert messages[-1]["type"] == "session.ended" and messages[-1]["utterances"] == 3
        finally:
            stop([gateway, *workers])
