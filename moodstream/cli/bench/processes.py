"""Child processes for the benchmarks that measure real gateways and workers: start, wait for HTTP, stop."""

from __future__ import annotations

import os
import subprocess
import sys

from moodstream.broker import processes


def bench_env(bootstrap: str | None = None, **settings: str) -> dict[str, str]:
    """This environment with moodstream's defaults: the caller's MOODSTREAM_KAFKA_* tuning is kept, other
    MOODSTREAM_ settings are dropped so a benchmark measures the defaults plus what it sets itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_") or k.startswith("MOODSTREAM_KAFKA_")}
    # every client of a benchmark comes from this one address: the per-client limit would cap the load it can make
    env |= {"MOODSTREAM_LOG_LEVEL": "WARNING", "MOODSTREAM_MAX_SESSIONS_PER_CLIENT": "100000"} | settings
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``moodstream ARGS`` as a child process that dies with the benchmark. Its stdout goes to our stderr: a
    benchmark's stdout carries its JSON alone (Faust writes terminal control codes such as show-cursor there when it
    stops)."""
    return processes.spawn(args, env, stdout=sys.stderr, die_with_parent=True)


wait_http = processes.wait_http
stop = processes.stop
