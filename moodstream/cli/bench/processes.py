"""Child processes for the benchmarks that measure real gateways and workers: start, wait for HTTP, stop."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import pydantic
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from moodstream.broker import processes
from moodstream.settings import Settings, env_var

STACK_OWNED = frozenset({"kafka_bootstrap_servers", "broker_port", "host", "port", "instance_id", "topic_rotation_s",
                         "workers"})  # fmt: skip
"""Settings a whole-stack benchmark gives each process it starts itself (its broker, ports, ids, worker count)."""


def bench_env(bootstrap: str | None = None, **settings: str) -> dict[str, str]:
    """This environment with moodstream's defaults: the caller's MOODSTREAM_KAFKA_* tuning is kept, other
    MOODSTREAM_ settings are dropped so a benchmark measures the defaults plus what it sets itself (`settings`, which
    include what its `--set` options name)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_") or k.startswith("MOODSTREAM_KAFKA_")}
    # every client of a benchmark comes from this one address: the per-client limit would cap the load it can make
    env |= {"MOODSTREAM_LOG_LEVEL": "WARNING", "MOODSTREAM_MAX_SESSIONS_PER_CLIENT": "100000"} | settings
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


def stack_settings(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs (a benchmark's `--set` options) as environment variables for the stack it starts. KEY is a
    setting's name or its variable (`audio_batch_ms`, `MOODSTREAM_AUDIO_BATCH_MS`); each value is validated as the
    processes will read it, so a typo fails here rather than in a child process. Raises ValueError saying what is
    wrong."""
    names = {env_var(name): name for name in Settings.model_fields}
    chosen: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        name = names.get(key.upper(), key.lower() if key.lower() in Settings.model_fields else None)
        if not sep or name is None:
            raise ValueError(f"{pair!r}: not KEY=VALUE with KEY a setting (`moodstream config` lists them)")
        if name in STACK_OWNED:
            raise ValueError(f"{key}: the benchmark sets it for each process it starts")
        chosen[name] = value
    try:
        GivenSettings(**chosen)
    except pydantic.ValidationError as error:
        problems = "; ".join(f"{env_var(str(e['loc'][0]))}: {e['msg']}" for e in error.errors())
        raise ValueError(problems) from None
    return {env_var(name): value for name, value in chosen.items()}


class GivenSettings(Settings):
    """The settings model reading only what it is given: `--set` values are the stack's, the caller's variables are
    not (the bench drops them), so a bad one there must not fail them."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_others: Any, **_named: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``moodstream ARGS`` as a child process that dies with the benchmark. Its stdout goes to our stderr: a
    benchmark's stdout carries its JSON alone (Faust writes terminal control codes such as show-cursor there when it
    stops)."""
    return processes.spawn(args, env, stdout=sys.stderr, die_with_parent=True)


wait_http = processes.wait_http
stop = processes.stop
