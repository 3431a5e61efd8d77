"""`moodstream up` starts the whole stack on an embedded broker, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from moodstream.broker.embedded import free_port
from tests.conftest import process_env, wait_ready


def spawn_with_ctrl_c(args: list[str], **env: str) -> subprocess.Popen[bytes]:
    """Start `args` with SIGINT at its default. A test run started in the background of a script inherits SIGINT
    ignored, and Python then installs no Ctrl-C handler, so `up` would never see the signal. A signal this process
    catches is back at its default in the child after exec (no preexec_fn, which is unsafe with threads running)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(args, env=process_env(None, **env))
    finally:
        signal.signal(signal.SIGINT, previous)


def moodstream(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moodstream", *args], env=process_env(None, **env),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.stack  # starts its own processes
def test_up_is_ready_then_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    """Beside a running `up`, `tail` finds its embedded broker with no setting; once `up` stops, `tail` says what to
    set in one line and exits 2."""
    port = free_port()
    data = {"MOODSTREAM_DATA_DIR": str(tmp_path)}
    up = spawn_with_ctrl_c([sys.executable, "-m", "moodstream", "up", "--port", str(port)], **data)
    try:
        wait_ready(f"http://127.0.0.1:{port}", [up], timeout_s=120)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["ready"] is True
        tailed = moodstream("tail", "moodstream.health", "--from-beginning", "--max-records", "1", "--json", **data)
        assert tailed.returncode == 0, tailed.stderr
        assert json.loads(tailed.stdout.splitlines()[0])["schema"] == "worker_heartbeat"
        family = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "tansu" in names and " worker" in names and " gateway" in names and " store" in names
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        _gone, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], f"left behind: {[p.cmdline() for p in alive]}"
    finally:
        if up.poll() is None:
            up.kill()
    no_broker = moodstream("tail", "moodstream.events", **data)
    assert no_broker.returncode == 2 and no_broker.stdout == ""
    assert len(no_broker.stderr.splitlines()) == 1 and "KAFKA_BOOTSTRAP_SERVERS" in no_broker.stderr


@pytest.mark.stack  # starts its own processes
def test_up_stops_everything_when_a_child_dies() -> None:
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "moodstream", "up", "--port", str(port)], env=process_env(None))
    try:
        wait_ready(f"http://127.0.0.1:{port}", [up], timeout_s=120)
        family = psutil.Process(up.pid).children(recursive=True)
        worker = next(p for p in family if "worker" in " ".join(p.cmdline()))
        worker.kill()
        assert up.wait(30) == 1  # reported and not left half alive
        _gone, alive = psutil.wait_procs(family, timeout=10)
        assert alive == []
    finally:
        if up.poll() is None:
            up.kill()
    time.sleep(0.1)
