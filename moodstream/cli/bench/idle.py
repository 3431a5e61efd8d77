"""`moodstream bench idle`: what the whole stack costs while nobody talks, per process, and how fast it then
answers the next session.

The stack is `moodstream up`'s (embedded broker, workers, the history store writing to a scratch SQLite file,
gateway; the topic keeper runs in this process, as it runs in `up`'s), warmed by one short session. Then no client:
after `SETTLE_S`, each process's CPU over `--seconds`. Then one session again: its first final result's end-to-end
latency, since a stack that rests must not be slower to answer (compare it with the warm-up session's).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

from moodstream.cli.bench import report
from moodstream.cli.bench.load import DEFAULT_AUDIO, LoadOptions, ProcessMeter, SessionStats, Stack, drive
from moodstream.producers.audio import load_pcm16

SESSION_S = 12.0
"""Seconds the warm-up session and the session after the rest each stream (one loop of the test speech)."""
SETTLE_S = 15.0
"""Seconds between the warm-up session's end and the measurement: consumers rest after 10 s without a record
(`FetchPacer.rest_after_s`) and their fetches in flight then end within one rest wait."""


def first_result_ms(stats: list[SessionStats]) -> float | None:
    """End-to-end latency of the earliest final result of the sessions."""
    results = [result for s in stats for result in s.e2e_ms]  # (seconds into the run, latency)
    return round(min(results)[1], 1) if results else None


def one_session(stack: Stack, pcm: bytes, workers: int) -> list[SessionStats]:
    options = LoadOptions(sessions=1, duration_s=SESSION_S, workers=workers, warmup_s=0)
    return asyncio.run(drive(stack.url, pcm, options, None))


def idle(seconds: float, workers: int, settings: dict[str, str] | None = None) -> dict:
    pcm = load_pcm16(DEFAULT_AUDIO)
    scratch = tempfile.TemporaryDirectory(prefix="moodstream-idle-")
    history_db = f"sqlite:///{scratch.name}/history.sqlite3"
    stack = Stack(workers, history_db=history_db, settings=dict(settings or {})).start()
    try:
        warm = one_session(stack, pcm, workers)
        pids = {name: p.pid for name, p in stack.processes.items()} | {"topic-keeper": os.getpid()}
        if stack.broker and stack.broker.process:
            pids["broker"] = stack.broker.process.pid
        time.sleep(SETTLE_S)
        meter = ProcessMeter(pids)
        time.sleep(seconds)
        cpu = {name: values["cpu_pct"] for name, values in meter.result().items()}
        after = one_session(stack, pcm, workers)
    finally:
        stack.stop()
        scratch.cleanup()
    return {
        "benchmark": "idle",
        "seconds": seconds,
        "workers": workers,
        "cpu_pct": cpu,
        "total_cpu_pct": round(sum(v for v in cpu.values() if v is not None), 1),
        "first_result_e2e_ms_warm": first_result_ms(warm),
        "first_result_e2e_ms_after_rest": first_result_ms(after),
        "settings": dict(settings or {}),
    }


def run_idle(seconds: float, workers: int, settings: dict[str, str], as_json: bool) -> None:
    report(idle(seconds, workers, settings), as_json)
