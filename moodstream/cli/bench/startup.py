"""`moodstream bench startup`: cold start of a worker and a gateway, as an orchestrator would see it.

Against its own embedded broker (or ``KAFKA_BOOTSTRAP_SERVERS``): start a worker process and time until its first
heartbeat owning every audio partition (models loaded, group joined, partitions assigned: the worker serves), then
start a gateway and time until ``/healthz`` answers (process up) and ``/readyz`` is 200 (broker, events consumer and
workers ready). Each round starts fresh processes; the median of the rounds is reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

from confluent_kafka import Consumer, TopicPartition

from moodstream.broker.embedded import EmbeddedBroker, ensure_topics, free_port
from moodstream.cli.bench import report
from moodstream.cli.bench.processes import bench_env, spawn, stop, wait_http
from moodstream.schemas import SchemaError, decode
from moodstream.schemas.records import WorkerHeartbeat
from moodstream.schemas.topics import AUDIO, HEALTH


def wait_for_worker(bootstrap: str, worker_id: str, process: subprocess.Popen[bytes], timeout_s: float) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-startup", "enable.auto.commit": False})
    _low, high = consumer.get_watermark_offsets(TopicPartition(HEALTH.name, 0), timeout=5)
    consumer.assign([TopicPartition(HEALTH.name, 0, high)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}")
            msg = consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            try:
                beat = decode(msg.value(), (WorkerHeartbeat,))
            except SchemaError:
                continue
            if beat.worker_id == worker_id and len(beat.audio_partitions) == AUDIO.partitions:
                return time.monotonic()
    finally:
        consumer.close()
    raise TimeoutError("worker not ready")


def one_round(bootstrap: str, index: int, heartbeat_s: float) -> dict[str, float]:
    worker_id = f"bench-startup-{index}-{time.time_ns()}"
    started = time.monotonic()
    worker = spawn(
        ["worker"],
        bench_env(bootstrap, MOODSTREAM_INSTANCE_ID=worker_id, MOODSTREAM_WORKER_HEARTBEAT_S=str(heartbeat_s)),
    )
    gateway = None
    try:
        worker_ready = wait_for_worker(bootstrap, worker_id, worker, 120) - started
        port = free_port()
        gateway_started = time.monotonic()
        gateway = spawn(["gateway", "--port", str(port)], bench_env(bootstrap))
        gateway_up = wait_http(f"http://127.0.0.1:{port}/healthz", [gateway], 60) - gateway_started
        gateway_ready = wait_http(f"http://127.0.0.1:{port}/readyz", [gateway], 60) - gateway_started
        return {"worker_ready_s": worker_ready, "gateway_up_s": gateway_up, "gateway_ready_s": gateway_ready}
    finally:
        stop([p for p in (gateway, worker) if p is not None])


def run(rounds: int, heartbeat_s: float, as_json: bool) -> None:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    try:
        bootstrap = external or broker.bootstrap  # type: ignore[union-attr]
        ensure_topics({"bootstrap.servers": bootstrap})
        runs = [one_round(bootstrap, i, heartbeat_s) for i in range(rounds)]
    finally:
        if broker is not None:
            broker.stop()
    result: dict[str, object] = {"rounds": rounds, "worker_heartbeat_s": heartbeat_s}
    for key in runs[0]:
        result[key] = round(statistics.median(r[key] for r in runs), 2)
        result[f"{key}_all"] = [round(r[key], 2) for r in runs]
    report(result, as_json)
