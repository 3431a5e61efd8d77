"""Child processes for the benchmarks that measure real gateways and workers: start, wait for HTTP, stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx


def bench_env(bootstrap: str | None = None, **settings: str) -> dict[str, str]:
    """This environment with moodstream's defaults: the caller's MOODSTREAM_KAFKA_* tuning is kept, other
    MOODSTREAM_ settings are dropped so a benchmark measures the defaults plus what it sets itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_") or k.startswith("MOODSTREAM_KAFKA_")}
    env |= {"MOODSTREAM_LOG_LEVEL": "WARNING"} | settings
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``moodstream ARGS`` as a child process. Its stdout goes to our stderr: a benchmark's stdout carries its JSON
    alone (Faust writes terminal control codes such as show-cursor there when it stops)."""
    return subprocess.Popen([sys.executable, "-m", "moodstream", *args], env=env, stdout=sys.stderr)


def wait_http(url: str, processes: list[subprocess.Popen[bytes]], timeout_s: float = 120.0) -> float:
    """Poll ``url`` until it answers 200; returns the monotonic time it did. Fails if a process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")


def stop(processes: list[subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    """SIGTERM all, wait, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
