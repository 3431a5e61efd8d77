"""`moodstream bench gateway`: what the gateway costs per real-time session.

Starts its own broker, one worker and one gateway, then N clients that each stream 20 ms frames of low noise in
real time (the worker runs VAD only, so ASR load does not disturb the gateway). Measures, on the gateway process
only: CPU time per session (% of one core), RSS per connection, and record publish → broker ack latency from the
gateway's own histogram (p50/p95 interpolated within its buckets): since the gateway joins frames into 100 ms records
(`MOODSTREAM_AUDIO_BATCH_MS`), that is one record's publish → ack.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import numpy as np
import psutil
import websockets

from moodstream.broker.embedded import EmbeddedBroker, ensure_topics, free_port
from moodstream.cli.bench import report
from moodstream.cli.bench.processes import bench_env, spawn, stop, wait_http

ACK = "moodstream_gateway_frame_ack_seconds_bucket"


def ack_buckets(metrics: str) -> list[tuple[float, float]]:
    buckets = []
    for line in metrics.splitlines():
        match = re.match(rf'{ACK}{{le="([^"]+)"}} ([0-9.e+]+)', line)
        if match:
            le = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
            buckets.append((le, float(match.group(2))))
    return buckets


def histogram_percentile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1]
    target, low, below = q * total, 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= target:
            if le == float("inf"):
                return low * 1000
            share = (target - below) / max(1e-9, cumulative - below)
            return (low + share * (le - low)) * 1000
        low, below = le, cumulative
    return low * 1000


async def client(url: str, seconds: float, frames_sent: list[int], rng: np.random.Generator) -> None:
    frame = (rng.standard_normal(320) * 20).astype("<i2").tobytes()
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start"}))
        await ws.recv()
        start = time.monotonic()
        count = int(seconds * 50)
        for i in range(count):
            delay = start + i * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(frame)
            frames_sent[0] += 1
        await ws.send(json.dumps({"type": "end"}))
        async for _ in ws:
            pass


async def run(sessions: int, seconds: float) -> dict:
    with EmbeddedBroker() as broker:
        ensure_topics({"bootstrap.servers": broker.bootstrap})
        env = bench_env(broker.bootstrap, MOODSTREAM_MAX_SESSIONS=str(max(64, sessions)))
        port = free_port()
        worker = spawn(["worker"], env)
        gateway = spawn(["gateway", "--port", str(port)], env)
        base = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(wait_http, f"{base}/readyz", [worker, gateway])
            async with httpx.AsyncClient() as http:
                process = psutil.Process(gateway.pid)
                rss_idle = process.memory_info().rss
                before = ack_buckets((await http.get(f"{base}/metrics")).text)
                cpu_before, started = process.cpu_times(), time.monotonic()
                frames = [0]
                rng = np.random.default_rng(0)
                url = f"ws://127.0.0.1:{port}/ws/analyze"
                tasks = [asyncio.create_task(client(url, seconds, frames, rng)) for _ in range(sessions)]
                await asyncio.sleep(min(seconds / 2, 5))
                rss_busy = process.memory_info().rss
                await asyncio.gather(*tasks)
                cpu_after, wall = process.cpu_times(), time.monotonic() - started
                after = ack_buckets((await http.get(f"{base}/metrics")).text)
        finally:
            stop([gateway, worker])
    cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {
        "benchmark": "gateway",
        "sessions": sessions,
        "seconds": seconds,
        "frames": frames[0],
        "frames_per_s": round(frames[0] / wall, 1),
        "gateway_cpu_pct": round(100 * cpu_s / wall, 2),
        "cpu_pct_per_session": round(100 * cpu_s / wall / sessions, 3),
        "ack_ms_p50": round(histogram_percentile(before, after, 0.5), 3),
        "ack_ms_p95": round(histogram_percentile(before, after, 0.95), 3),
        "rss_kb_per_connection": round((rss_busy - rss_idle) / 1024 / sessions, 1),
        "gateway_rss_mb": round(rss_busy / 2**20, 1),
    }


def main(sessions: int, seconds: float, as_json: bool) -> None:
    report(asyncio.run(run(sessions, seconds)), as_json)
