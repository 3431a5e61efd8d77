"""The report of a long `bench load` (`moodstream bench soak`), written while it runs: one JSON line per interval in
``intervals.jsonl`` and ``soak.png`` (end-to-end p95 per interval, and every process's RSS over time) redrawn after
each, so a run stopped early still leaves its report."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# `moodstream.cli.bench.load` imports this module: its ProcessMeter and SessionStats are only duck-typed here.
ProcessMeter = Any
SessionStats = Any

P95_BAR_MS = 1200.0
"""The soak's bar for each interval's end-to-end p95, drawn on the plot."""

PROBE_EVERY_S = 15.0
"""How often the machine-speed probe runs its fixed piece of work."""


def reference_work_cpu_ms() -> float:
    """CPU time (this thread's, ms) of a fixed piece of pure-Python work. Waiting for a core does not count, so a
    rise over a run means each instruction got slower (a busier sibling hyperthread, frequency, caches), not that
    the run's own processes queued for the cores."""
    started = time.thread_time()
    total = 0
    for i in range(300_000):
        total += i * i % 7
    return (time.thread_time() - started) * 1000.0


class SpeedProbe:
    """Runs `reference_work_cpu_ms` every `PROBE_EVERY_S` on a thread of its own; `start()` / `stop()`."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        """(monotonic time, CPU ms of the reference work)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speed-probe", daemon=True)

    def start(self) -> SpeedProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(PROBE_EVERY_S):
            self.samples.append((time.monotonic(), reference_work_cpu_ms()))

    def median_since(self, since: float) -> float | None:
        """Median CPU ms of the samples taken since `since` (monotonic); None before the first."""
        recent = [cpu_ms for at, cpu_ms in self.samples if at >= since]
        return round(float(np.median(recent)), 2) if recent else None


def stage_medians(stats: list[SessionStats], start_s: float, end_s: float) -> dict[str, float] | None:
    """Medians of where the final results received in [start_s, end_s) spent their latency: the ASR call, the rest
    of the pipeline (hops, queues, the other stages), the relay from the worker to the client, and everything but
    the ASR call per result (`beyond_asr`: medians do not add, so this is not rest plus relay). A latency that rises
    over a run shows here in the part that rises."""
    splits = [split for s in stats for split in s.stages_ms if start_s <= split.at_s < end_s]
    if not splits:
        return None
    parts = {
        "asr": [x.asr_ms for x in splits],
        "rest_of_pipeline": [x.pipeline_ms - x.asr_ms for x in splits],
        "relay": [x.e2e_ms - x.pipeline_ms for x in splits],
        "beyond_asr": [x.e2e_ms - x.asr_ms for x in splits],  # what the stack adds to each utterance's ASR call
    }
    return {name: round(float(np.median(values)), 1) for name, values in parts.items()}


class SoakReport:
    """Interval statistics of a running load: p95, results, and CPU and RSS per process."""

    def __init__(self, out_dir: Path, interval_s: float, meter: ProcessMeter, probe: SpeedProbe) -> None:
        self.out_dir = out_dir
        self.interval_s = interval_s
        self.meter = meter
        self.intervals: list[dict[str, Any]] = []
        self.run_start = meter.started
        self._cpu = {name: meter._cpu(handle) for name, handle in meter.handles.items()}
        self.probe = probe
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "intervals.jsonl").write_text("")

    async def run(self, stats: list[SessionStats], run_start: float) -> None:
        """Close an interval every `interval_s` until cancelled."""
        self.run_start = run_start
        while True:
            due = run_start + (len(self.intervals) + 1) * self.interval_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.close_interval(stats, run_start)

    def finish(self, stats: list[SessionStats]) -> list[dict[str, Any]]:
        """The intervals, the last (partial) one included when it holds results."""
        start = len(self.intervals) * self.interval_s
        if any(t >= start for s in stats for t, _latency in s.e2e_ms):
            self.close_interval(stats, self.run_start, partial=True)
        return self.intervals

    def close_interval(self, stats: list[SessionStats], run_start: float, partial: bool = False) -> None:
        index = len(self.intervals)
        start, now = index * self.interval_s, time.monotonic() - run_start
        latencies = [latency for s in stats for t, latency in s.e2e_ms if start <= t < start + self.interval_s]
        line = {
            "interval": index,
            "start_s": start,
            "seconds": round(now - start, 1),
            "partial": partial,
            "results": len(latencies),
            "e2e_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            "e2e_ms_p95": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
            # the machine's speed over the interval: the same work's CPU ms (see `reference_work_cpu_ms`)
            "reference_work_cpu_ms": self.probe.median_since(run_start + start),
            "stages_ms_p50": stage_medians(stats, start, start + self.interval_s),
            "processes": self._process_figures(now - start, run_start + start),
        }
        self.intervals.append(line)
        with (self.out_dir / "intervals.jsonl").open("a") as out:
            out.write(json.dumps(line) + "\n")
        self.plot()

    def _process_figures(self, seconds: float, since: float) -> dict[str, dict[str, float | None]]:
        """CPU over the interval, RSS at its end, and the interval's highest RSS: the broker's RSS is a sawtooth (a
        minute's records, freed when the rotation's keeper empties a topic), so a reading at one moment says little
        alone."""
        figures: dict[str, dict[str, float | None]] = {}
        for name, handle in self.meter.handles.items():
            cpu = self.meter._cpu(handle)
            series = self.meter.rss_series[name]
            in_interval = [rss for t, rss in series if t >= since - self.meter.started]
            figures[name] = {
                "cpu_pct": round(100 * (cpu - self._cpu[name]) / max(seconds, 1e-9), 1),
                "rss_mb": round(series[-1][1] / 2**20, 1) if series else None,
                "rss_peak_mb": round(max(in_interval) / 2**20, 1) if in_interval else None,
            }
            self._cpu[name] = cpu
        return figures

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (latency, memory) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
        whole = [i for i in self.intervals if not i["partial"]]  # a run's tail holds the few results of its shutdown
        mids = [(i["start_s"] + i["seconds"] / 2) / 60 for i in whole]
        latency.plot(mids, [i["e2e_ms_p95"] for i in whole], "o-", label="p95")
        latency.plot(mids, [i["e2e_ms_p50"] for i in whole], "o-", label="p50")
        latency.axhline(P95_BAR_MS, color="grey", linestyle="--", label=f"bar {P95_BAR_MS:.0f} ms")
        latency.set_ylabel("end-to-end latency per interval (ms)")
        latency.legend(loc="upper left")
        speed = latency.twinx()
        reference = [i["reference_work_cpu_ms"] or float("nan") for i in whole]  # None: no probe in a short interval
        speed.plot(mids, reference, "x:", color="black", label="machine: reference work")
        speed.set_ylabel("reference work (CPU ms; higher: slower)")
        speed.legend(loc="lower right", fontsize="small")
        for name, series in self.meter.rss_series.items():
            if series:
                t, rss = np.array(series, dtype=float).T
                memory.plot(t / 60, rss / 2**20, label=name)
        memory.set_xlabel("minutes into the run")
        memory.set_ylabel("RSS (MB)")
        memory.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(self.out_dir / "soak.png", dpi=100)
        plt.close(fig)
