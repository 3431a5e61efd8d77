"""Shared fixtures: a real tansu broker for the whole test session, and real worker/gateway processes."""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from moodstream.broker import processes
from moodstream.broker.embedded import EmbeddedBroker, ensure_topics, free_port

# Short group timeouts: a consumer-group join waits about half the session timeout.
TEST_ENV = {
    "MOODSTREAM_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "MOODSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "MOODSTREAM_WORKER_HEARTBEAT_S": "0.5",
    "MOODSTREAM_LOG_LEVEL": "WARNING",
    # The tests check what partials are; whether a busy machine pauses them is measured by `bench capacity`, and on
    # a 2-core CI box running Chromium beside the stack the CPU gate would make them come or not by chance.
    "MOODSTREAM_PARTIAL_MAX_CPU_PERCENT": "100",
}


PROCESS_FIXTURES = {"kafka", "stack"}
"""A test using one of these starts real processes: it belongs to the `stack` marker, out of the fast lane."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    with EmbeddedBroker() as broker:
        ensure_topics({"bootstrap.servers": broker.bootstrap})
        yield broker.bootstrap


def process_env(bootstrap: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env |= TEST_ENV | extra
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


spawn = processes.spawn
stop = processes.stop


def wait_ready(base_url: str, children: list[subprocess.Popen[bytes]], timeout_s: float = 90.0) -> None:
    processes.wait_http(f"{base_url}/readyz", children, timeout_s, interval_s=0.2)


@dataclass
class Stack:
    bootstrap: str
    http: str
    ws: str


@pytest.fixture(scope="session")
def stack(kafka: str) -> Iterator[Stack]:
    """One processor worker and one gateway, as real processes, on the session broker."""
    port = free_port()
    worker = spawn(["worker"], process_env(kafka))
    gateway = spawn(["gateway", "--port", str(port)], process_env(kafka))
    try:
        wait_ready(f"http://127.0.0.1:{port}", [worker, gateway])
        yield Stack(kafka, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/analyze")
    finally:
        stop([gateway, worker])


def postgres_bin() -> Path:
    """The Debian `postgresql` package's server binaries (the newest installed)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:  # fail, never skip: the history on PostgreSQL is part of the product (`scripts/setup dev`)
        raise RuntimeError("the history tests need Debian's postgresql: apt-get install postgresql")
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server of our own on a free loopback port (as the `postgres` user when run as root: the
    server refuses root, and its folder is outside pytest's, which only root may enter); yields its URL."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="moodstream-postgres-"))
    data, port = home / "data", free_port()
    as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_server:
        shutil.chown(home, "postgres")
    binaries = postgres_bin()
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
    run([*as_server, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "moodstream"])
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    run([*as_server, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"])
    try:
        yield f"postgresql://moodstream@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_server, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def write_call_wav(path: Path) -> None:
    """A two-party call as a stereo WAV: the agent (the three test prompts) on the left; the customer (the read
    sentence) on the right from 4 s on, while the agent's long prompt still plays, so the turns overlap."""
    import wave

    from moodstream.producers.audio import load_pcm16

    data = Path(__file__).parent / "data"
    agent = np.frombuffer(load_pcm16(data / "three_prompts.wav"), dtype="<i2")
    customer = np.frombuffer(load_pcm16(data / "read_sentence.wav"), dtype="<i2")
    offset = 4 * 16_000
    stereo = np.zeros((max(len(agent), offset + len(customer)) + 16_000, 2), dtype="<i2")
    stereo[: len(agent), 0] = agent
    stereo[offset : offset + len(customer), 1] = customer
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(stereo.tobytes())


def tone(seconds: float, amplitude: float, freq: float = 440.0, rate: int = 16_000) -> bytes:
    """A sine of the given peak amplitude (fraction of full scale) as int16 PCM."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


def read_session_records(bootstrap: str, spec, session_id: str, expected, timeout_s: float = 10.0) -> list:
    """Every record of one session on a topic, from the beginning, until the topic is quiet."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from moodstream.schemas import decode

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}"})
    consumer.assign([TopicPartition(spec.name, p, OFFSET_BEGINNING) for p in range(spec.partitions)])
    records, deadline, quiet_since = [], time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 2.0:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        quiet_since = time.monotonic()
        if (msg.key() or b"").decode() == session_id:
            records.append(decode(msg.value(), expected))
    consumer.close()
    return records
