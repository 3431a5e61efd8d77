"""Calls end to end: a stereo file streamed by `moodstream stream` through the gateway, the broker and a worker; each
party transcribed as it would be alone, every result tagged with its channel and role, and the session's end
counting each party's utterances."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moodstream.cli.bench.wer import edit_distance, normalize
from tests.conftest import Stack, write_call_wav

DATA = Path(__file__).parent / "data"
AGENT_TRUTH = [normalize(p["text"]) for p in json.loads((DATA / "three_prompts.json").read_text())]
CUSTOMER_TRUTH = normalize(
    "IF THE READER WILL EXCUSE ME I WILL SAY NOTHING OF MY ANTECEDENTS NOR OF THE CIRCUMSTANCES WHICH LED ME TO "
    "LEAVE MY NATIVE COUNTRY THE NARRATIVE WOULD BE TEDIOUS TO HIM AND PAINFUL TO MYSELF"
)


def moodstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moodstream", *args], capture_output=True, text=True, timeout=180, check=False
    )


def test_a_stereo_call_is_two_parties_each_heard_alone_and_tagged(stack: Stack, tmp_path: Path) -> None:
    call, out = tmp_path / "call.wav", tmp_path / "call.jsonl"
    write_call_wav(call)
    done = moodstream("stream", str(call), "--roles", "agent,customer", "--url", stack.ws, "--fast", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
    agent = [m for m in finals if m["role"] == "agent"]
    customer = [m for m in finals if m["role"] == "customer"]
    assert [normalize(m["text"]) for m in agent] == AGENT_TRUTH  # as the mono stream of the same file gets
    heard = [word for m in customer for word in normalize(m["text"])]
    assert edit_distance(CUSTOMER_TRUTH, heard) / len(CUSTOMER_TRUTH) <= 0.1
    assert {m["channel"] for m in agent} == {0} and {m["channel"] for m in customer} == {1}
    assert any(c["start_ms"] < a["end_ms"] and a["start_ms"] < c["end_ms"] for a in agent for c in customer)
    about_speech = [m for m in messages if m["type"] in ("utterance", "partial", "acoustic", "vad.speech_start")]
    assert all(m["role"] == ("agent", "customer")[m["channel"]] for m in about_speech)
    assert {m["role"] for m in messages if m["type"] == "level"} == {"agent", "customer"}
    ended = messages[-1]
    assert ended["type"] == "session.ended" and ended["channel_utterances"] == [len(agent), len(customer)]
    assert sorted(m["utterance_seq"] for m in finals) == sorted({m["utterance_seq"] for m in finals})
    assert "customer" in done.stdout and "by channel" in done.stdout
    summary = ended["summary"]
    assert [(p["role"], p["utterances"]) for p in summary["parties"]] == [("agent", 3), ("customer", 2)]
    for party, said in zip(summary["parties"], (agent, customer), strict=True):
        assert party["talk_ms"] == sum(m["end_ms"] - m["start_ms"] for m in said)
        assert party["mean_score"] == pytest.approx(sum(m["fused_score"] for m in said) / len(said), abs=1e-4)
        assert party["most_negative"]["fused_score"] == min(m["fused_score"] for m in said)
        assert party["overlap_ms"] > 0  # the customer started while the agent's long prompt played
    assert summary["parties"][1]["interruptions"] == 1 and 0 < summary["silence_share"] < 1


def test_roles_for_a_mono_file_are_refused(stack: Stack) -> None:
    done = moodstream("stream", str(DATA / "three_prompts.wav"), "--roles", "a,b", "--url", stack.ws)
    assert done.returncode == 2 and "stereo file" in done.stdout
