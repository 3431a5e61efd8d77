"""`moodstream bench load` and `bench capacity`: real speech through the whole stack, many sessions at real time.

Each client (producers.client.MoodstreamClient, the load generator) loops a recording of real speech with natural
pauses (default: tests/data/three_prompts.wav, three prompts in 11 s) at real time, starting at a random offset so
utterance ends do not line up across sessions, then ends the session. Measured at the clients, on one clock:

- end-to-end latency per utterance: fused result received − gateway receipt of the utterance's last frame
  (``last_frame_received_at_ms``, stamped by the gateway);
- provisional acoustic latency: acoustic result received − gateway receipt of the window's last frame;
- lost: utterances the pipeline cut (``session.ended.utterances``) without a final result at the client;
  duplicates: final results the application saw twice (after the client library), and on the wire;
- lag trend: least-squares slope of end-to-end latency over the run (ms per minute): growing lag means overload;
- finals hurried: the share of finals the workers decoded greedily because others waited behind them (their
  heartbeats count them; `MOODSTREAM_ASR_CATCH_UP`);
- CPU (% of one core) and peak RSS of every process of the stack.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from moodstream.broker.embedded import EmbeddedBroker, ensure_topics, free_port
from moodstream.broker.generations import Generations
from moodstream.broker.rotation import EMBEDDED_ROTATION_S, TopicKeeper, generation_specs
from moodstream.cli.bench import report
from moodstream.cli.bench.processes import bench_env, spawn, stop, wait_http
from moodstream.cli.bench.soak import SoakReport, SpeedProbe, stage_medians
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import ClientOptions, MoodstreamClient, SessionFailed
from moodstream.schemas import SchemaError, decode
from moodstream.schemas.audio import SAMPLE_RATE
from moodstream.schemas.records import WorkerHeartbeat
from moodstream.schemas.topics import HEALTH
from moodstream.settings import Settings

LOAD_GENERATOR = "load-generator"
"""The bench's own process in its per-process CPU: the clients, not the stack."""
DEFAULT_AUDIO = Path(__file__).resolve().parents[3] / "tests" / "data" / "three_prompts.wav"


@dataclass
class LoadOptions:
    """What one load run drives."""

    sessions: int = 8
    """Concurrent real-time clients."""
    duration_s: float = 60.0
    """Seconds each client streams."""
    workers: int = 2
    """Processor worker processes."""
    audio: Path = DEFAULT_AUDIO
    """Speech with pauses that each client loops."""
    frame_ms: int = 20
    """Audio per WebSocket frame (the protocol allows 20-100 ms)."""
    partials: bool = True
    """Whether the sessions ask for partial transcripts (the start message's `partials` option)."""
    report_dir: Path | None = None
    """Where a soak writes its report while it runs (an interval per line, and a plot); None: no report."""
    interval_s: float = 300.0
    """Length of a report interval."""
    warmup_s: float = 20.0
    """Seconds the same sessions stream first, not counted: the models' first calls, the workers' group join and
    the broker's first records would otherwise land in the measured run (and fail a capacity round on their own)."""
    channels: int = 1
    """Channels each client sends: 2 makes every client a two-party call (the recording on the left, the same
    recording half a pass later on the right, so the parties overlap); a call counts as two sessions."""
    settings: dict[str, str] = field(default_factory=dict)
    """Environment variables for the stack's processes on top of the defaults (`--set`; `stack_settings`)."""


@dataclass(frozen=True)
class StageSplit:
    """Where one final result's end-to-end latency went, from the result's own `latencies_ms`."""

    at_s: float
    """Seconds into the run when the client got it."""
    asr_ms: float
    """The ASR call's compute time for the utterance."""
    pipeline_ms: float
    """Gateway receipt of the last frame → the fused result made by the worker (hops, queues and every stage)."""
    e2e_ms: float
    """Gateway receipt of the last frame → the client's receipt of the result."""


@dataclass
class SessionStats:
    e2e_ms: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the run, latency)
    stages_ms: list[StageSplit] = field(default_factory=list)
    acoustic_ms: list[float] = field(default_factory=list)
    finals: list[int] = field(default_factory=list)
    cut: int | None = None
    errors: list[str] = field(default_factory=list)
    wire_duplicates: int = 0
    partials: int = 0


@dataclass
class Stack:
    """Broker, workers and a gateway as child processes (what `moodstream up` runs), for measuring."""

    workers: int
    rotation_s: float = EMBEDDED_ROTATION_S
    """The stream topics' period (0: the contract's fixed names), as `moodstream up` sets it on the embedded broker."""
    history_db: str | None = None
    """Run the history store too, writing here (`moodstream up` runs it; the load benches leave it out, so their
    figures compare with releases before it)."""
    settings: dict[str, str] = field(default_factory=dict)
    """Environment variables for every process it starts, over its own (`--set`; `stack_settings`)."""
    bootstrap: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    keeper: TopicKeeper | None = None
    port: int = 0

    def env(self) -> dict[str, str]:
        """The environment of each process it starts: the defaults, the bench's own settings, then `settings`."""
        own = {
            "MOODSTREAM_MAX_SESSIONS": "1000",
            "MOODSTREAM_RESUME_SECRET": "bench-resume-secret",
            "MOODSTREAM_TOPIC_ROTATION_S": str(self.rotation_s),
        }
        return bench_env(self.bootstrap, **(own | self.settings))

    def spawn(self, name: str, *args: str) -> None:
        self.processes[name] = spawn(list(args), self.env())

    def start_broker(self) -> None:
        self.broker = EmbeddedBroker().start()
        self.bootstrap = self.broker.bootstrap

    def start(self) -> Stack:
        self.start_broker()
        generations = Generations(self.rotation_s)
        ensure_topics({"bootstrap.servers": self.bootstrap}, generation_specs(generations))
        if generations.enabled:
            config = {"bootstrap.servers": self.bootstrap}
            self.keeper = TopicKeeper(config, generations, Settings().resume_ttl_s).start()
        for index in range(self.workers):
            self.spawn(f"worker-{index}", "worker")
        if self.history_db:
            self.spawn("store", "store", "--db", self.history_db)
        self.port = free_port()
        self.spawn("gateway", "gateway", "--port", str(self.port))
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 120) -> None:
        wait_http(f"http://127.0.0.1:{self.port}/readyz", list(self.processes.values()), timeout_s)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/analyze"

    def stop(self) -> None:
        stop(list(self.processes.values()))
        if self.keeper:
            self.keeper.stop()
        if self.broker:
            self.broker.stop()


class ProcessMeter:
    """CPU and peak RSS of the stack's processes over a run."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.handles = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.cpu0 = {name: self._cpu(h) for name, h in self.handles.items()}
        self.peak_rss = {name: 0 for name in self.handles}
        self.rss_series: dict[str, list[tuple[float, int]]] = {name: [] for name in self.handles}
        self.started = time.monotonic()

    @staticmethod
    def _cpu(handle: psutil.Process) -> float:
        try:
            times = handle.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    def sample(self) -> None:
        for name, handle in self.handles.items():
            try:
                rss = handle.memory_info().rss
                self.peak_rss[name] = max(self.peak_rss[name], rss)
                self.rss_series[name].append((time.monotonic() - self.started, rss))
            except psutil.Error:
                pass

    def rss_growth_mb_per_h(self, name: str, warmup_s: float = 60.0) -> float | None:
        """Least-squares slope of RSS after the warm-up (models loaded, buffers grown); None on short runs."""
        points = [(t, rss) for t, rss in self.rss_series[name] if t >= warmup_s]
        if len(points) < 10:
            return None
        t, rss = np.array(points, dtype=float).T
        return round(float(np.polyfit(t, rss, 1)[0]) * 3600 / 2**20, 1)

    def result(self) -> dict[str, dict[str, float | None]]:
        wall = time.monotonic() - self.started
        return {
            name: {
                "cpu_pct": round(100 * (self._cpu(h) - self.cpu0[name]) / wall, 1),
                "rss_mb": round(self.peak_rss[name] / 2**20, 1),
                "rss_first_mb": round(self.rss_series[name][0][1] / 2**20, 1) if self.rss_series[name] else None,
                "rss_last_mb": round(self.rss_series[name][-1][1] / 2**20, 1) if self.rss_series[name] else None,
                "rss_growth_mb_per_h": self.rss_growth_mb_per_h(name),
            }
            for name, h in self.handles.items()
        }


async def one_session(url: str, pcm: bytes, options: LoadOptions, run_start: float, stats: SessionStats) -> None:
    session_options = {"partials": options.partials} | ({"channels": 2} if options.channels == 2 else {})
    client_options = ClientOptions(backoff_s=0.2, frame_ms=options.frame_ms, session_options=session_options)
    client = MoodstreamClient(url, client_options)
    try:
        await client.connect()
    except (OSError, SessionFailed) as refused:  # a limit of the gateway's (one a `--set` chose, say): counted
        stats.errors.append(f"refused: {refused}")  # as an error, and as a loss (the session never ended)
        return
    sender = asyncio.create_task(stream_looped(client, pcm, options.duration_s, options.frame_ms))
    async for message in client.messages():
        now_ms = time.time() * 1000
        kind = message["type"]
        if kind == "utterance" and message["final"]:
            stats.finals.append(message["utterance_seq"])
            if message.get("last_frame_received_at_ms"):
                latency = now_ms - message["last_frame_received_at_ms"]
                at_s = time.monotonic() - run_start
                stats.e2e_ms.append((at_s, latency))
                stats.stages_ms.append(stage_split(message, at_s, latency))
        elif kind == "partial":
            stats.partials += 1
        elif kind == "acoustic" and message.get("window_seq") is not None:
            stats.acoustic_ms.append(now_ms - message["received_at_ms"])
        elif kind == "session.ended":
            stats.cut = message["utterances"]
        elif kind == "error":
            stats.errors.append(message["code"])
    stats.wire_duplicates = client.duplicates_dropped
    await asyncio.gather(sender, return_exceptions=True)
    await client.close()


def stage_split(result: dict, at_s: float, e2e_ms: float) -> StageSplit:
    latencies = result.get("latencies_ms") or {}
    return StageSplit(at_s, latencies.get("asr", 0.0), latencies.get("pipeline", 0.0), e2e_ms)


async def stream_looped(client: MoodstreamClient, pcm: bytes, seconds: float, frame_ms: int) -> None:
    """`pcm` looped for `seconds` at real time from a random frame, one pass of the recording at a time (built up
    front, an hour of ten sessions' frames took 2.4 GB), then the session's end."""
    frame = SAMPLE_RATE * 2 * client.channels * frame_ms // 1000
    pcm = pcm[: len(pcm) // frame * frame]  # whole frames only: the protocol's shortest frame is 20 ms
    left = int(seconds * 1000) // frame_ms * frame
    start = random.randrange(0, len(pcm) // frame) * frame
    while left > 0:
        chunk = pcm[start : start + left]
        await client.stream(chunk, end=False)
        left, start = left - len(chunk), 0
        await asyncio.sleep(frame_ms / 1000)  # `stream` paces each pass from its own first frame
    await client.end()


def percentile(values: list[float], q: float) -> float | None:
    """None (JSON's null) without values: NaN is no JSON, and a bench's line must parse anywhere."""
    return round(float(np.percentile(values, q)), 1) if values else None


def p95_by_interval(points: list[tuple[float, float]], seconds: float) -> list[float | None]:
    """End-to-end p95 over consecutive sixths of the run (at least a minute each): lag shows up as a rising list."""
    interval = max(60.0, seconds / 6)
    buckets: dict[int, list[float]] = {}
    for t, latency in points:
        buckets.setdefault(int(t // interval), []).append(latency)
    return [percentile(buckets[k], 95) for k in sorted(buckets)]


def summarise(sessions: int, seconds: float, stats: list[SessionStats]) -> dict:
    e2e = [latency for s in stats for _t, latency in s.e2e_ms]
    points = [(t, latency) for s in stats for t, latency in s.e2e_ms]
    slope = 0.0
    if len(points) > 2:
        t, y = np.array(points).T
        slope = float(np.polyfit(t, y, 1)[0]) * 60  # ms per minute
    cut = sum(s.cut or 0 for s in stats)
    finals = [len(set(s.finals)) for s in stats]
    lost = sum(max(0, (s.cut or 0) - n) for s, n in zip(stats, finals, strict=True))
    lost += sum(1 for s in stats if s.cut is None)  # a session that never ended counts as (at least) one loss
    duplicates = sum(len(s.finals) - len(set(s.finals)) for s in stats)
    errors = [code for s in stats for code in s.errors]
    return {
        "sessions": sessions,
        "duration_s": seconds,
        "utterances": cut,
        "results": sum(finals),
        "e2e_ms_p50": percentile(e2e, 50),
        "e2e_ms_p95": percentile(e2e, 95),
        "e2e_ms_p99": percentile(e2e, 99),
        "e2e_ms_max": round(max(e2e), 1) if e2e else None,
        "acoustic_ms_p50": percentile([a for s in stats for a in s.acoustic_ms], 50),
        "acoustic_ms_p95": percentile([a for s in stats for a in s.acoustic_ms], 95),
        "lag_trend_ms_per_min": round(slope, 1),
        "e2e_ms_p95_by_interval": p95_by_interval(points, seconds),
        "lost": lost,
        "duplicates": duplicates,
        "wire_duplicates": sum(s.wire_duplicates for s in stats),
        "errors": {code: errors.count(code) for code in sorted(set(errors))},
        "partials": sum(s.partials for s in stats),
        "stages_ms_p50": stage_medians(stats, 0.0, float("inf")),
    }


Reporter = Callable[[list[SessionStats], float], Awaitable[None]]
"""Runs beside the sessions with their live stats and the run's start (monotonic); cancelled when they end."""


async def drive(
    url: str,
    pcm: bytes,
    options: LoadOptions,
    meter: ProcessMeter | None,
    run_start: float | None = None,
    reporter: Reporter | None = None,
) -> list[SessionStats]:
    """Run the sessions to their end; result times are seconds since ``run_start`` (monotonic; default now)."""
    sessions = options.sessions
    stats = [SessionStats() for _ in range(sessions)]
    run_start = time.monotonic() if run_start is None else run_start
    reporting = asyncio.create_task(reporter(stats, run_start)) if reporter else None

    async def sample() -> None:
        while meter is not None:
            meter.sample()
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    tasks = []
    for index in range(sessions):  # staggered starts over one second, as real clients arrive
        session = one_session(url, pcm, options, run_start, stats[index])
        tasks.append(asyncio.create_task(session))
        await asyncio.sleep(1.0 / sessions)
    await asyncio.gather(*tasks)
    sampler.cancel()
    if reporting:
        reporting.cancel()
    return stats


def call_of(pcm: bytes) -> bytes:
    """A two-party call from one recording: it on the left, and half a pass later on the right."""
    voice = np.frombuffer(pcm, dtype="<i2")
    return np.stack([voice, np.roll(voice, len(voice) // 2)], axis=1).tobytes()


def latest_heartbeats(bootstrap: str, read_s: float = 3.0) -> dict[str, WorkerHeartbeat]:
    """Each worker's latest heartbeat (they come every 2 s) on the health topic, read for `read_s` seconds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}"})
    consumer.assign([TopicPartition(HEALTH.name, p, OFFSET_BEGINNING) for p in range(HEALTH.partitions)])
    latest: dict[str, WorkerHeartbeat] = {}
    deadline = time.monotonic() + read_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            try:
                beat = decode(message.value(), (WorkerHeartbeat,))
            except SchemaError:
                continue
            if beat.at_ms >= getattr(latest.get(beat.worker_id), "at_ms", 0.0):
                latest[beat.worker_id] = beat
    finally:
        consumer.close()
    return latest


def worker_finals(bootstrap: str) -> tuple[int, int]:
    """(finals started, finals hurried) over the stack's workers, from each one's latest heartbeat."""
    beats = latest_heartbeats(bootstrap).values()
    return sum(b.finals for b in beats), sum(b.finals_hurried for b in beats)


def hurried_share(before: tuple[int, int], after: tuple[int, int]) -> dict:
    """The run's finals and the share of them hurried, from the workers' counts before and after it."""
    started, hurried = after[0] - before[0], after[1] - before[1]
    return {"finals_started": started, "finals_hurried_share": round(hurried / started, 3) if started > 0 else 0.0}


def load(options: LoadOptions, stack: Stack | None = None) -> dict:
    pcm = load_pcm16(options.audio)
    pcm = call_of(pcm) if options.channels == 2 else pcm
    own = stack is None
    stack = stack or Stack(options.workers, settings=options.settings).start()
    try:
        pids = {name: p.pid for name, p in stack.processes.items()} | {LOAD_GENERATOR: os.getpid()}
        if stack.broker and stack.broker.process:
            pids["broker"] = stack.broker.process.pid
        if options.warmup_s > 0:
            asyncio.run(drive(stack.url, pcm, replace(options, duration_s=options.warmup_s, report_dir=None), None))
        finals_before = worker_finals(stack.bootstrap)
        meter = ProcessMeter(pids)
        probe = SpeedProbe().start()  # how fast the machine was: runs of one setting differ with it
        soak = SoakReport(options.report_dir, options.interval_s, meter, probe) if options.report_dir else None
        stats = asyncio.run(drive(stack.url, pcm, options, meter, reporter=soak.run if soak else None))
        result = summarise(options.sessions, options.duration_s, stats)
        result["channels"] = options.channels
        result["channel_sessions"] = options.sessions * options.channels
        if soak:
            result["intervals"] = soak.finish(stats)
        probe.stop()
        result["reference_work_cpu_ms"] = probe.median_since(0.0)
        result["workers"] = options.workers
        result["warmup_s"] = options.warmup_s
        result["frame_ms"] = options.frame_ms
        result["partials_requested"] = options.partials
        result["settings"] = options.settings
        result["processes"] = meter.result()
        result |= hurried_share(finals_before, worker_finals(stack.bootstrap))
        return result
    finally:
        if own:
            stack.stop()


def run_load(options: LoadOptions, as_json: bool) -> None:
    report(load(options), as_json)


def passes(result: dict, p95_ms: float, max_slope: float) -> bool:
    p95 = result["e2e_ms_p95"]  # None: no result came at all
    return p95 is not None and p95 <= p95_ms and result["lost"] == 0 and result["lag_trend_ms_per_min"] <= max_slope


def capacity_round(result: dict, ok: bool) -> dict:
    """One round of `bench capacity` as its JSON lists it. `stack_cpu_pct` (the stack's processes, the load generator
    left out) per channel-session compares two releases at the same round far more finely than the step a capacity
    run ends on (a step either way between runs of one release)."""
    kept = ("sessions", "channel_sessions", "e2e_ms_p95", "lost", "lag_trend_ms_per_min", "partials",
            "finals_hurried_share", "reference_work_cpu_ms")  # fmt: skip
    stack_cpu = sum(p["cpu_pct"] for name, p in result["processes"].items() if name != LOAD_GENERATOR)
    per_session = stack_cpu / result["channel_sessions"] if result["channel_sessions"] else 0.0
    return {k: result[k] for k in kept} | {
        "stack_cpu_pct": round(stack_cpu, 1),
        "stack_cpu_pct_per_session": round(per_session, 2),
        "ok": ok,
    }


def run_capacity(options: LoadOptions, start: int, step: int, p95_ms: float, max_slope: float, as_json: bool) -> None:
    """Raise N until a run fails the bar; the capacity is the largest N that passed."""
    best, tried = 0, []
    sessions = start
    while True:
        result = load(replace(options, sessions=sessions))
        ok = passes(result, p95_ms, max_slope)
        tried.append(capacity_round(result, ok))
        print(f"capacity: {tried[-1]}", file=sys.stderr, flush=True)
        if not ok:
            break
        best = sessions
        sessions += step
    summary = {
        "capacity_sessions": best * options.channels,
        "capacity_clients": best,
        "channels": options.channels,
        "workers": options.workers,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "frame_ms": options.frame_ms,
        "partials_requested": options.partials,
        "settings": options.settings,
        "bar": {"e2e_ms_p95": p95_ms, "lost": 0, "lag_trend_ms_per_min_max": max_slope},
        "runs": tried,
    }
    report(summary, as_json)
