"""``moodstream up``: broker (unless external), processor workers, the history writer and the gateway as supervised
child processes.

Any child that dies takes the whole stack down (reported, non-zero exit): the service never runs half alive.
SIGINT/SIGTERM stop children in reverse order (gateway, workers, broker) and wait for them. While it runs an embedded
broker, `up.json` in the data folder says where, so `moodstream tail` and `analytics` find it by themselves.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from moodstream.broker import processes
from moodstream.broker.embedded import EmbeddedBroker, ensure_topics
from moodstream.broker.rotation import EMBEDDED_ROTATION_S, TopicKeeper, generation_specs
from moodstream.settings import Settings, env_var

log = logging.getLogger("moodstream.up")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


RUNNING_FILE = "up.json"
"""In `data_dir` while `moodstream up` runs an embedded broker: its address and topic rotation, for `tail` and
`analytics` started beside it."""


def running_file(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser() / RUNNING_FILE


def with_running_broker(settings: Settings) -> Settings | None:
    """`settings` able to reach a broker: as they are when `KAFKA_BOOTSTRAP_SERVERS` is set, else with the embedded
    broker of a `moodstream up` running on this machine; None when there is neither."""
    if settings.kafka_bootstrap_servers:
        return settings
    try:
        running = json.loads(running_file(settings).read_text())
    except (OSError, ValueError):
        return None
    if not psutil.pid_exists(running.get("pid", -1)):
        return None  # a stale file: that `up` died without removing it
    update = {"kafka_bootstrap_servers": running["kafka_bootstrap_servers"]}
    if settings.topic_rotation_s is None:
        update["topic_rotation_s"] = running["topic_rotation_s"]
    return settings.model_copy(update=update)


class Stack:
    def __init__(self, settings: Settings) -> None:
        # One resume secret for the whole stack, so a restarted gateway accepts the tokens its predecessor issued.
        self.settings = settings.model_copy(update={"resume_secret": settings.resume_secret or secrets.token_hex(32)})
        self.broker: EmbeddedBroker | None = None
        self.keeper: TopicKeeper | None = None
        self.children: list[Child] = []
        self._stopping = False

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.settings.kafka_bootstrap_servers or ""
        for name, value in self.settings.model_dump().items():
            if name not in ("kafka_bootstrap_servers", "instance_id") and value is not None:
                env[env_var(name)] = str(value)
        env.pop("MOODSTREAM_INSTANCE_ID", None)
        return env

    def spawn(self, name: str, *args: str) -> None:
        process = processes.spawn(list(args), self.env(), die_with_parent=True)
        self.children.append(Child(name, process))
        log.info("started %s (pid %d)", name, process.pid)

    def start(self) -> None:
        if not self.settings.kafka_bootstrap_servers:
            self.broker = EmbeddedBroker(self.settings.broker_port).start()
            rotation = self.settings.topic_rotation_s
            update = {
                "kafka_bootstrap_servers": self.broker.bootstrap,
                "topic_rotation_s": EMBEDDED_ROTATION_S if rotation is None else rotation,
            }
            self.settings = self.settings.model_copy(update=update)
            print(f"embedded Kafka broker (tansu) on {self.broker.bootstrap}", flush=True)
            self._announce(update)
        generations = self.settings.generations
        ensure_topics(self.settings.kafka_config(), generation_specs(generations))
        if generations.enabled:
            self.keeper = TopicKeeper(self.settings.kafka_config(), generations, self.settings.resume_ttl_s).start()
        for index in range(self.settings.workers):
            self.spawn(f"worker-{index}", "worker")
        self.spawn("store", "store")  # the history: sessions, results and summaries in a database
        self.spawn("gateway", "gateway")

    def _announce(self, broker: dict[str, object]) -> None:
        path = running_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(broker | {"pid": os.getpid()}))

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        url = f"http://{self.settings.host}:{self.settings.port}/readyz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stopping:
            if self.dead_child():
                return False
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        return False

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop(self) -> None:
        """Gateway first, then workers (reverse start order), each SIGTERM then SIGKILL after 15 s; then the broker."""
        self._stopping = True
        processes.stop([child.process for child in reversed(self.children)])
        if self.keeper:
            self.keeper.stop()
        if self.broker:
            running_file(self.settings).unlink(missing_ok=True)
            self.broker.stop()


def run_up(settings: Settings) -> int:
    stack = Stack(settings)
    processes.stop_on_sigterm()
    try:
        stack.start()
        if not stack.wait_ready():
            dead = stack.dead_child()
            print(f"moodstream: {dead.name if dead else 'the stack'} failed to start", file=sys.stderr, flush=True)
            return 1
        host = stack.settings.host
        print(
            f"moodstream ready\n  WebSocket: ws://{host}:{settings.port}/ws/analyze\n"
            f"  demo page: http://{host}:{settings.port}/\n"
            f"  history: {stack.settings.history_url} (`moodstream calls`)\n  press Ctrl-C to stop",
            flush=True,
        )
        while True:
            dead = stack.dead_child()
            if dead:
                print(
                    f"moodstream: {dead.name} exited with code {dead.process.returncode}; stopping the stack",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("moodstream: stopping", flush=True)
        return 0
    finally:
        stack.stop()
