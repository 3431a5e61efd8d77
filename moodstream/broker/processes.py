"""Child moodstream processes: start one, wait until it answers HTTP, stop a group of them. One implementation for
`moodstream up` (the supervisor), the benchmarks and the tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import IO

import httpx

from moodstream.broker.embedded import terminate_with_parent


def spawn(
    args: list[str], env: dict[str, str], *, stdout: IO[str] | int | None = None, die_with_parent: bool = False
) -> subprocess.Popen[bytes]:
    """``moodstream ARGS`` as a child process. With `die_with_parent` it gets SIGTERM when the thread that spawned it
    exits (spawn from the main thread) and has a process group of its own, so a terminal's Ctrl-C reaches only us
    and we stop it in order."""
    return subprocess.Popen(
        [sys.executable, "-m", "moodstream", *args],
        env=env,
        stdout=stdout,
        preexec_fn=terminate_with_parent if die_with_parent else None,
    )


def stop_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, so `finally` blocks stop the children as Ctrl-C does."""

    def on_signal(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)


def wait_http(
    url: str, processes: list[subprocess.Popen[bytes]], timeout_s: float = 120.0, interval_s: float = 0.05
) -> float:
    """Poll `url` until it answers 200; returns the monotonic time it did. Fails as soon as one of `processes`
    exits, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")


def stop(processes: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM all (in the order given), wait for each until `timeout_s` has passed, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
