"""The processor worker: one Faust app with every stage registered, its heartbeat, and the process entry point.

Stage shells (this package) register their agents on the app through the stage runtime (`runtime.context.StageContext`);
the Faust internals the worker overrides live in `faust_overrides.py`.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import faust

from moodstream.broker.generations import WORKER_GROUP, is_topic
from moodstream.broker.rotation import refuse_auto_topic_creation
from moodstream.clock import now_ms
from moodstream.processors.runtime import faust_overrides
from moodstream.processors.runtime.context import ModelVersions, StageContext
from moodstream.processors.stages import acoustic, asr, audio, fusion
from moodstream.schemas.records import WorkerHeartbeat
from moodstream.schemas.topics import AUDIO, HEALTH
from moodstream.settings import Settings

log = logging.getLogger("moodstream.worker")

APP_ID = WORKER_GROUP
STAGES = (audio, acoustic, asr, fusion)


def faust_broker_url(settings: Settings) -> str:
    servers = (settings.kafka_bootstrap_servers or "").split(",")
    return ";".join(f"kafka://{s.strip()}" for s in servers if s.strip())


def faust_credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if "SSL" in protocol else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def create_app(settings: Settings) -> faust.App:
    """Build the worker app with every stage registered."""
    datadir = Path(settings.data_dir) / APP_ID  # not the current directory; Faust does not create its parents
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        APP_ID,
        broker=faust_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=AUDIO.partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_ms / 1000,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        # Stages hold records unacked on purpose (an open utterance's frames, an unfused utterance's scores) and
        # drop that state when their partition is revoked; waiting for those acks would stall every rebalance.
        stream_wait_empty=False,
        producer_linger=0.002,
        web_enabled=False,
        TableManager=faust_overrides.NoDelayTableManager,
        store="memory://",
        datadir=str(datadir),
        table_standby_replicas=0,
    )
    faust_overrides.install(app, settings)
    refuse_auto_topic_creation()
    context = StageContext(app, settings)
    versions: ModelVersions = {}
    for stage in STAGES:
        versions |= stage.register(context)
    register_heartbeat(context, versions)
    return app


def register_heartbeat(context: StageContext, versions: ModelVersions) -> None:
    """Publish this worker's heartbeat (its audio partitions and model versions) once every model has loaded, every
    `worker_heartbeat_s` and at once after each rebalance; a model that failed to load crashes the worker."""
    app, settings = context.app, context.settings
    models: dict[str, str] = {}

    async def send_heartbeat() -> None:
        if not all(model.future.done() for model in context.loading):
            return  # not ready to serve: gateways count only live heartbeats
        if not models:
            try:
                for model in context.loading:
                    model.get()
            except Exception as exc:  # noqa: BLE001 - whatever the loader raised, the worker cannot serve
                log.critical("a model failed to load: %s", exc)
                await app.crash(exc)  # exits non-zero: a supervisor restarts it or `moodstream up` stops
                return
            models.update({name: v() if callable(v) else v for name, v in versions.items()})
        assignment = app.consumer.assignment() if app.consumer else set()
        partitions = sorted({tp.partition for tp in assignment if is_topic(tp.topic, AUDIO)})
        beat = WorkerHeartbeat(
            worker_id=settings.instance_id,
            audio_partitions=partitions,
            at_ms=now_ms(),
            models=models,
            handed_off=context.handoffs.handed_off,
            **{name: value for counts in context.counts for name, value in counts().items()},
        )
        await context.emit(HEALTH, beat, settings.instance_id)

    @app.timer(interval=settings.worker_heartbeat_s)
    async def heartbeat() -> None:
        await send_heartbeat()

    async def beat_when_assigned(_app: faust.App, **_kwargs: Any) -> None:
        await send_heartbeat()  # tell gateways at once, not at the next tick

    app.on_rebalance_complete.connect(beat_when_assigned, weak=False)  # a local function: keep a strong reference


def run_worker(settings: Settings) -> None:
    """Run one worker process until SIGINT/SIGTERM."""
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, override_logging=False)
    worker.execute_from_commandline()
