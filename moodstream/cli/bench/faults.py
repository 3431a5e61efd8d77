"""`moodstream bench faults`: sessions stream real speech while a worker, the gateway and the broker fail in turn.

Timeline (seconds into the run, defaults): at 20 one of two workers is killed with SIGKILL and restarted a second
later; at 60 the gateway is stopped (SIGTERM: it closes sessions with 1012) and started again on the same port, and
the clients reconnect and resume; at 100 the broker goes away for 10 s (`moodstream.cli.bench.outage`: connections reset
and refused) and comes back, with no process of ours restarted. The sessions stream until 140 and then end.

Reported, counted at the clients after the client library: utterances lost (cut by the pipeline, no final result)
and duplicated; per fault, the recovery time: from the fault (for the broker: from its return) until the last
result that came later than the latency bar (1.2 s end-to-end), 0 when no result was late; the worst end-to-end
latency in each phase; the error codes clients were told; which of our processes were still running at the end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from moodstream.broker.embedded import EmbeddedBroker, free_port
from moodstream.cli.bench import report
from moodstream.cli.bench.load import DEFAULT_AUDIO, LoadOptions, SessionStats, Stack, drive, summarise
from moodstream.cli.bench.outage import BrokerOutage
from moodstream.producers.audio import load_pcm16


@dataclass
class FaultOptions:
    """When each fault happens and how long the run lasts."""

    sessions: int = 4
    """Concurrent real-time clients."""
    duration_s: float = 140.0
    """Seconds each client streams."""
    worker_fault_at_s: float = 20.0
    """When one of the two workers is killed (SIGKILL)."""
    worker_restart_after_s: float = 1.0
    """How long the killed worker stays down."""
    gateway_fault_at_s: float = 60.0
    """When the gateway is stopped (SIGTERM) and started again."""
    broker_fault_at_s: float = 100.0
    """When the broker goes away."""
    broker_outage_s: float = 10.0
    """How long it stays away."""
    late_ms: float = 1200.0
    """A result later than this (end-to-end) counts as not yet recovered."""
    settings: dict[str, str] = field(default_factory=dict)
    """Environment variables for the stack's processes on top of the defaults (`--set`)."""


@dataclass
class FaultStack(Stack):
    """The bench's stack with the broker reached through a proxy that can take it away."""

    outage: BrokerOutage | None = None
    marks: dict[str, float] = field(default_factory=dict)

    def start_broker(self) -> None:
        proxy_port = free_port()
        self.broker = EmbeddedBroker(advertised_port=proxy_port).start()
        self.outage = BrokerOutage(self.broker.port, proxy_port).start()
        self.bootstrap = self.outage.bootstrap

    def stop(self) -> None:
        super().stop()
        if self.outage:
            self.outage.stop()


async def inject(stack: FaultStack, options: FaultOptions, run_start: float) -> None:
    async def at(offset_s: float) -> None:
        await asyncio.sleep(max(0.0, run_start + offset_s - time.monotonic()))

    def mark(name: str) -> None:
        stack.marks[name] = round(time.monotonic() - run_start, 2)

    await at(options.worker_fault_at_s)
    victim = stack.processes["worker-1"]
    victim.kill()
    mark("worker_killed")
    await asyncio.to_thread(victim.wait)
    await asyncio.sleep(options.worker_restart_after_s)
    stack.spawn("worker-1", "worker")
    mark("worker_restarted")

    await at(options.gateway_fault_at_s)
    gateway = stack.processes["gateway"]
    gateway.terminate()
    mark("gateway_stopped")
    await asyncio.to_thread(gateway.wait, 30)
    stack.spawn("gateway", "gateway", "--port", str(stack.port))
    await asyncio.to_thread(stack.wait_ready)
    mark("gateway_ready")

    await at(options.broker_fault_at_s)
    assert stack.outage is not None
    await asyncio.to_thread(stack.outage.down)
    mark("broker_down")
    await asyncio.sleep(options.broker_outage_s)
    await asyncio.to_thread(stack.outage.up)
    mark("broker_up")


def recovery_s(stats: list[SessionStats], since_s: float, until_s: float, late_ms: float) -> float:
    """From ``since_s`` to the arrival of the last late result before ``until_s`` (0 when none was late)."""
    late = [t for s in stats for t, latency in s.e2e_ms if since_s <= t < until_s and latency > late_ms]
    return round(max(late) - since_s, 2) if late else 0.0


def worst_ms(stats: list[SessionStats], since_s: float, until_s: float) -> float:
    return round(max((lat for s in stats for t, lat in s.e2e_ms if since_s <= t < until_s), default=0.0), 1)


async def run(stack: FaultStack, options: FaultOptions) -> list[SessionStats]:
    pcm = load_pcm16(DEFAULT_AUDIO)
    load = LoadOptions(sessions=options.sessions, duration_s=options.duration_s, workers=2)
    run_start = time.monotonic()
    faults = asyncio.create_task(inject(stack, options, run_start))
    stats = await drive(stack.url, pcm, load, None, run_start)
    await faults
    return stats


def faults(options: FaultOptions) -> dict:
    stack = FaultStack(workers=2, settings=options.settings)
    stack.start()
    try:
        stats = asyncio.run(run(stack, options))
        alive = {name: process.poll() is None for name, process in stack.processes.items()}
    finally:
        stack.stop()
    m = stack.marks
    end = float("inf")
    result = summarise(options.sessions, options.duration_s, stats)
    result |= {
        "worker_recovery_s": recovery_s(stats, m["worker_killed"], m["gateway_stopped"], options.late_ms),
        "gateway_recovery_s": recovery_s(stats, m["gateway_stopped"], m["broker_down"], options.late_ms),
        "broker_recovery_s": recovery_s(stats, m["broker_up"], end, options.late_ms),
        "worker_phase_e2e_ms_max": worst_ms(stats, m["worker_killed"], m["gateway_stopped"]),
        "gateway_phase_e2e_ms_max": worst_ms(stats, m["gateway_stopped"], m["broker_down"]),
        "broker_phase_e2e_ms_max": worst_ms(stats, m["broker_down"], end),
        "before_faults_e2e_ms_max": worst_ms(stats, 0, m["worker_killed"]),
        "late_ms": options.late_ms,
        "broker_outage_s": options.broker_outage_s,
        "marks_s": m,
        "processes_running_at_end": alive,
        "settings": options.settings,
    }
    return result


def main(options: FaultOptions, as_json: bool) -> None:
    report(faults(options), as_json)
