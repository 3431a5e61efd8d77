"""`moodstream stream` against the running stack: results in the terminal and as JSONL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from moodstream.cli.bench.wer import normalize
from tests.conftest import Stack

DATA = Path(__file__).parent / "data"
TRUTH = [normalize(p["text"]) for p in json.loads((DATA / "three_prompts.json").read_text())]


def moodstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moodstream", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_stream_a_file_prints_results_and_writes_jsonl(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    done = moodstream("stream", str(DATA / "three_prompts.wav"), "--url", stack.ws, "--fast", "--out", str(out))
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    finals = [m for m in messages if m["type"] == "utterance" and m["final"]]
    assert [normalize(m["text"]) for m in finals] == TRUTH
    assert all(-1 <= m["fused_score"] <= 1 for m in finals)
    assert messages[0]["type"] == "session.started" and messages[-1]["type"] == "session.ended"
    assert "Please enter your agent number" in done.stdout and "session ended (client): 3 utterances" in done.stdout


def test_stream_reports_a_refused_session_and_bad_arguments(stack: Stack) -> None:
    wav = str(DATA / "three_prompts.wav")
    refused = moodstream("stream", wav, "--url", stack.ws.replace("/ws/analyze", "/ws/nowhere"))
    assert refused.returncode == 1 and "could not start a session" in refused.stdout
    both = moodstream("stream", wav, "--mic", "--url", stack.ws)
    assert both.returncode == 2 and "not both" in both.stdout
