"""The ``moodstream`` command: one CLI for the whole system."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import click

from moodstream.logs import setup_logging
from moodstream.settings import AsrBackend, AsrEngine, Settings


def load_settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """moodstream: live speech in, fused text + acoustic sentiment out, over Kafka."""


@main.command()
@click.option("--port", type=int, help="Gateway port (default 8000).")
@click.option("--host", help="Gateway bind address (default 127.0.0.1).")
@click.option("--workers", type=int, help="Processor worker processes.")
def up(port: int | None, host: str | None, workers: int | None) -> None:
    """Start the whole service: embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), workers, history, gateway."""
    from moodstream.cli.supervisor import run_up

    settings = load_settings(port=port, host=host, workers=workers)
    setup_logging(settings.log_level, settings.log_json)
    sys.exit(run_up(settings))


@main.command()
@click.option("--port", type=int, default=0, help="Port (0 picks a free one).")
def broker(port: int) -> None:
    """Run the embedded tansu broker with the contract's topics (rotating, with their keeper) until Ctrl-C."""
    import signal
    import threading

    from moodstream.broker.embedded import EmbeddedBroker
    from moodstream.broker.generations import Generations
    from moodstream.broker.rotation import EMBEDDED_ROTATION_S, TopicKeeper

    setup_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(port) as embedded:
        config, generations = {"bootstrap.servers": embedded.bootstrap}, Generations(EMBEDDED_ROTATION_S)
        keeper = TopicKeeper(config, generations, Settings().resume_ttl_s).start()
        click.echo(f"KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap}")
        click.echo(f"MOODSTREAM_TOPIC_ROTATION_S={EMBEDDED_ROTATION_S:g}")  # workers and gateways need it too
        try:
            while not stop.wait(0.5):
                if embedded.process is None or embedded.process.poll() is not None:
                    raise click.ClickException("tansu exited")
        except KeyboardInterrupt:
            pass
        finally:
            keeper.stop()


@main.command()
@click.option("--port", type=int, help="Port (default 8000).")
@click.option("--host", help="Bind address (default 127.0.0.1).")
def gateway(port: int | None, host: str | None) -> None:
    """Run one gateway instance (needs KAFKA_BOOTSTRAP_SERVERS)."""
    from moodstream.gateway.app import run_gateway

    settings = load_settings(port=port, host=host)
    setup_logging(settings.log_level, settings.log_json)
    run_gateway(settings)


@main.command()
def worker() -> None:
    """Run one processor worker (needs KAFKA_BOOTSTRAP_SERVERS); start more to scale out."""
    from moodstream.processors.stages.worker import run_worker

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_json)
    sys.argv = [sys.argv[0]]  # faust's Worker parses argv; ours are already consumed
    run_worker(settings)


@main.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mic", is_flag=True, help="Stream the default microphone instead of a file (Ctrl-C to finish).")
@click.option("--url", default="ws://127.0.0.1:8000/ws/analyze", show_default=True, help="The gateway's WebSocket.")
@click.option("--fast", is_flag=True, help="Send as fast as the server admits instead of real time.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write every server message as JSONL.")
@click.option("--frame-ms", default=20, show_default=True, help="Frame length sent.")
@click.option("--token", envvar="MOODSTREAM_CLIENT_TOKEN", help="API key or token (env MOODSTREAM_CLIENT_TOKEN).")
@click.option("--roles", help="A stereo file is a call, one party a channel: name them (default left,right).")
@click.option("--mono", is_flag=True, help="Mix a stereo file down to one voice instead of streaming it as a call.")
def stream(
    file: Path | None,
    mic: bool,
    url: str,
    fast: bool,
    out: Path | None,
    frame_ms: int,
    token: str | None,
    roles: str | None,
    mono: bool,
) -> None:
    """Stream an audio file (any format, resampled to 16 kHz) or the microphone; show results live. A stereo file
    streams as a call: each channel one party, judged on its own.

    Reconnects and resumes the session if the connection drops. Exit status 1 on a fatal server error.
    """
    from moodstream.producers.streamer import StreamRequest, run

    request = StreamRequest(file, mic, url, fast, out, frame_ms, token, roles, mono)
    sys.exit(run(request))


@main.command()
@click.argument("topic")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a pretty view.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record instead of the newest.")
@click.option("--max-records", type=int, default=0, help="Stop after this many records (0: never).")
def tail(topic: str, as_json: bool, from_beginning: bool, max_records: int) -> None:
    """Print the records of a topic as they arrive (KAFKA_BOOTSTRAP_SERVERS, or the broker of a running `up`)."""
    from moodstream.cli.tail import tail_topic

    settings = reachable_settings("tail")
    tail_topic(settings, topic, as_json=as_json, from_beginning=from_beginning, max_records=max_records)


def reachable_settings(command: str) -> Settings:
    """The settings with a broker to read (`supervisor.with_running_broker`), or one line saying what to set, exit 2."""
    from moodstream.cli.supervisor import with_running_broker

    settings = with_running_broker(load_settings())
    if settings is None:
        click.echo(f"moodstream {command}: no broker: set KAFKA_BOOTSTRAP_SERVERS, or start `moodstream up` "
                   "on this machine (its embedded broker is found by itself)", err=True)  # fmt: skip
        sys.exit(2)
    return settings


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 if the checked-in JSON Schema files differ from the models.")
def schemas(check: bool) -> None:
    """Regenerate (or check) the JSON Schema files in schemas/json."""
    from moodstream.schemas.jsonschema import main as generate

    sys.exit(generate(["--check"] if check else []))


@main.command(name="config")
def config_table() -> None:
    """Print every setting as a markdown table."""
    from moodstream.settings import settings_table

    click.echo(settings_table())


@main.group()
def bench() -> None:
    """Benchmarks: each prints one JSON object as its last line."""
    from moodstream.broker.processes import stop_on_sigterm

    stop_on_sigterm()  # a stopped benchmark stops its stack and leaves the report it has written so far


@bench.command(name="vad")
@click.option("--prompts", default=200, show_default=True, help="Asterisk prompts in the labelled stream.")
@click.option("--seed", default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_vad(prompts: int, seed: int, as_json: bool) -> None:
    """Endpointing accuracy (frame accuracy, boundary F1) and VAD ms per 32 ms window on one thread."""
    from moodstream.cli.bench.vad import main as run

    run(prompts, seed, as_json)


@bench.command(name="text")
@click.option(
    "--tsv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Header, then sentence<TAB>label (1/0, SST-2) or sentence<TAB>label3 (negative/neutral/positive).",
)
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--context", is_flag=True, help="Give each sentence the previous one of its dialogue (source_id column).")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_text(tsv: Path, model_dir: Path | None, context: bool, as_json: bool) -> None:
    """Text sentiment accuracy (3-way: UAR, F1, confusion), ms per sentence at batch 1 (p50/p95); one thread."""
    from moodstream.cli.bench.text import main as run

    run(tsv, model_dir, context, as_json)


engine_option = click.option(
    "--engine",
    type=click.Choice(get_args(AsrEngine)),
    default="auto",
    show_default=True,
    help="Where Whisper runs (MOODSTREAM_ASR_ENGINE): measure another CPU's choice here, e.g. ctranslate2 (Intel's).",
)
"""The ASR benches' engine, one definition for each command that takes it."""


@bench.command(name="partials")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder of audio files plus transcripts.tsv or labels.tsv (first column: file).",
)
@click.option("--limit", type=int, default=0, help="Use only the first N files.")
@click.option("--min-speech", type=float, default=4.0, show_default=True, help="Report on utterances this long (s).")
@click.option(
    "--from-start",
    is_flag=True,
    help="Decode every partial from the utterance's start (no settled words given to the decoder), for comparison.",
)
@engine_option
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_partials(data: Path, limit: int, min_speech: float, from_start: bool, engine: str, as_json: bool) -> None:
    """Partial transcripts on long speech: how many, how early, how close the last is to the final, flicker, cost."""
    from moodstream.cli.bench.partials import main as run

    run(data, limit, min_speech, from_start, as_json, engine)  # type: ignore[arg-type]  # click.Choice holds only the Literal's values


@bench.command(name="asr")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder of audio files plus transcripts.tsv (file<TAB>text).",
)
@click.option(
    "--make-asterisk",
    type=int,
    default=0,
    help="First write this many Debian asterisk prompts into --data (needs the apt packages).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Which prompts --make-asterisk samples.")
@click.option("--limit", type=int, default=0, help="Use only the first N files.")
@click.option("--min-seconds", type=float, default=0.0, help="Use only files at least this long (e.g. 6: long speech).")
@click.option(
    "--backend",
    type=click.Choice(get_args(AsrBackend)),
    default="whisper",
    show_default=True,
    help="The ASR backend to measure (the reference is always faster-whisper's default with tiny.en).",
)
@click.option(
    "--hurried",
    is_flag=True,
    help="Decode every file as a busy worker decodes a final with others waiting behind it (MOODSTREAM_ASR_CATCH_UP).",
)
@engine_option
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_asr(
    data: Path,
    make_asterisk: int,
    seed: int,
    limit: int,
    min_seconds: float,
    backend: str,
    hurried: bool,
    engine: str,
    as_json: bool,
) -> None:
    """Production ASR vs faster-whisper's default transcribe(): WER and ms per utterance, one thread each."""
    from moodstream.cli.bench.asr import main as run
    from moodstream.cli.bench.asr import make_asterisk_folder

    if make_asterisk:
        make_asterisk_folder(data, make_asterisk, seed)
    run(data, limit, as_json, backend, min_seconds, hurried, engine)  # type: ignore[arg-type]  # click.Choice holds only the Literal's values


@bench.command(name="acoustic")
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder of RAVDESS-named files (any depth).",
)
@click.option("--actors", default="", help="Comma-separated actors to score, or 'all' (default: the held-out ones).")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_acoustic(data: Path, actors: str, as_json: bool) -> None:
    """Acoustic emotion: 3-class UAR, accuracy, confusion, ms per 500 ms window on one thread."""
    from moodstream.cli.bench.acoustic import main as run

    run(data, actors, as_json)


@main.command()
def topics() -> None:
    """Create the contract's topics on KAFKA_BOOTSTRAP_SERVERS (idempotent: existing topics are left alone)."""
    from moodstream.broker.embedded import ensure_topics

    setup_logging()
    ensure_topics(load_settings().kafka_config())
    click.echo("topics ready")


@bench.command(name="fusion")
@click.option(
    "--ravdess",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="RAVDESS root: fused vs acoustic-only UAR on the acoustic model's held-out actors.",
)
@click.option(
    "--sst2",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="SST-2 dev.tsv: sentences spoken by espeak-ng; fused vs text-only accuracy.",
)
@click.option("--actors", default="", help="Comma-separated actors to score, or 'all' (default: the held-out ones).")
@click.option("--limit", type=int, default=0, help="Use only the first N SST-2 sentences.")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_fusion(ravdess: Path | None, sst2: Path | None, actors: str, limit: int, as_json: bool) -> None:
    """Fusion keeps what each modality knows: RAVDESS (neutral words) and SST-2 via espeak-ng (flat voice)."""
    from moodstream.cli.bench.fusion import main as run

    if not ravdess and not sst2:
        raise click.UsageError("give --ravdess DIR and/or --sst2 FILE")
    run(ravdess, sst2, actors, limit, as_json)


@bench.command(name="sentiment")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder with labels.tsv (header, then file<TAB>label3[<TAB>…]) and the audio files it names.",
)
@click.option("--limit", type=int, default=0, help="Use only the first N files.")
@click.option(
    "--clips",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write one TSV row per clip (file, labels, each stage's label, fused score, the result's emotion and "
    "arousal, transcript) to this file.",
)
@click.option(
    "--voice-head",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Score this voice head (voice_head.json) instead of the shipped one, e.g. a leave-one-corpus-out fold's.",
)
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_sentiment(data: Path, limit: int, clips: Path | None, voice_head: Path | None, as_json: bool) -> None:
    """The serving verdict (VAD, voice, ASR, text, fusion) per clip: UAR, accuracy, shares, confusion of each; four-way
    emotion and arousal AUC where labels.tsv has those columns."""
    from moodstream.cli.bench.sentiment import main as run

    run(data, limit, as_json, clips, voice_head)


@main.command()
@click.option("--port", type=int, default=8090, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--window", type=int, default=20, show_default=True, help="Utterances per session in the rolling view.")
def analytics(port: int, host: str, window: int) -> None:
    """Rolling per-session aggregates of fused results over HTTP (GET /sessions, /sessions/{id})."""
    import uvicorn

    from moodstream.cli.analytics import create_app

    settings = reachable_settings("analytics")
    setup_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings, window), host=host, port=port, log_level="warning")


@main.command()
@click.option("--db", help="postgresql://… or sqlite:///path (default: MOODSTREAM_HISTORY_DB, else a file in the data "
              "folder).")  # fmt: skip
def store(db: str | None) -> None:
    """Write sessions, final results and summaries from the events topic into the history database."""
    from moodstream.cli.store import run_store

    settings = reachable_settings("store")
    setup_logging(settings.log_level, settings.log_json)
    run_store(settings, db or settings.history_url)


@main.command()
@click.argument("session_id", required=False)
@click.option("--db", help="postgresql://… or sqlite:///path (default: as `moodstream store`).")
@click.option("--limit", type=int, default=20, show_default=True, help="Sessions listed.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def calls(session_id: str | None, db: str | None, limit: int, as_json: bool) -> None:
    """Past sessions from the history database, newest first; with SESSION_ID, its timeline and summary."""
    from moodstream.cli.history_view import show

    sys.exit(show(db or load_settings().history_url, session_id, limit, as_json))


@main.command(name="hash-key")
@click.argument("key")
def hash_key_command(key: str) -> None:
    """Print the SHA-256 digest to put in MOODSTREAM_API_KEY_HASHES for an API key."""
    from moodstream.gateway.auth import hash_key

    click.echo(hash_key(key))


@main.command()
@click.option("--subject", default="client", show_default=True, help="Who the token is for (logged).")
@click.option("--ttl", type=float, default=3600, show_default=True, help="Seconds until it expires.")
def token(subject: str, ttl: float) -> None:
    """Mint an HMAC-signed session token with MOODSTREAM_TOKEN_SECRET."""
    from moodstream.gateway.auth import mint_token

    secret = load_settings().token_secret
    if not secret:
        raise click.UsageError("set MOODSTREAM_TOKEN_SECRET")
    click.echo(mint_token(secret, subject, ttl))


@bench.command(name="gateway")
@click.option("--sessions", type=int, default=20, show_default=True, help="Concurrent real-time clients.")
@click.option("--duration", type=float, default=20.0, show_default=True, help="Seconds each client streams.")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_gateway(sessions: int, duration: float, as_json: bool) -> None:
    """Gateway cost per real-time session: CPU, frame→ack latency, memory per connection."""
    from moodstream.cli.bench.gateway import main as run

    run(sessions, duration, as_json)


@bench.command(name="framework")
@click.option("--sessions", type=int, default=50, show_default=True, help="Concurrent real-time clients.")
@click.option("--duration", type=float, default=15.0, show_default=True, help="Seconds each client streams.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Interleaved runs per framework (best kept).")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_framework(sessions: int, duration: float, rounds: int, as_json: bool) -> None:
    """Starlette vs FastAPI for the gateway's WebSocket: server CPU per real-time session (needs fastapi)."""
    from moodstream.cli.bench.framework import run

    run(sessions, duration, rounds, as_json)


@bench.command(name="startup")
@click.option("--rounds", type=int, default=3, show_default=True, help="Fresh worker + gateway starts (median kept).")
@click.option("--heartbeat-s", type=float, default=2.0, show_default=True, help="Worker heartbeat period used.")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_startup(rounds: int, heartbeat_s: float, as_json: bool) -> None:
    """Cold start: worker ready (models loaded, partitions assigned) and gateway ready (/readyz 200)."""
    from moodstream.cli.bench.startup import run

    run(rounds, heartbeat_s, as_json)


WORKERS_OPTION = click.option("--workers", type=int, default=2, show_default=True, help="Processor worker processes.")
AUDIO_OPTION = click.option(
    "--audio",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Speech with pauses each client loops (default: tests/data/three_prompts.wav).",
)
FRAME_MS_OPTION = click.option(
    "--frame-ms", type=click.IntRange(20, 100), default=20, show_default=True, help="Audio per WebSocket frame."
)


PARTIALS_OPTION = click.option(
    "--partials/--no-partials", default=True, show_default=True, help="Sessions ask for partial transcripts."
)


REPORT_OPTION = click.option(
    "--report", type=click.Path(path_type=Path), help="Write a report per interval here while the run goes (soak)."
)
INTERVAL_OPTION = click.option(
    "--interval", type=float, default=300.0, show_default=True, help="Seconds per report interval."
)
CHANNELS_OPTION = click.option(
    "--channels", type=click.IntRange(1, 2), default=1, show_default=True,
    help="2: each client is a two-party call (the recording on both channels, offset); a call counts as two sessions.",
)  # fmt: skip


def _stack_settings(_context: click.Context, _param: click.Parameter, pairs: tuple[str, ...]) -> dict[str, str]:
    from moodstream.cli.bench.processes import stack_settings

    try:
        return stack_settings(pairs)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


SET_OPTION = click.option(
    "--set", "settings", multiple=True, metavar="KEY=VALUE", callback=_stack_settings,
    help="A setting for the stack's processes, e.g. audio_batch_ms=200 (repeatable). Without it a benchmark runs the "
    "defaults whatever MOODSTREAM_ variables are set (MOODSTREAM_KAFKA_* apart); the JSON lists what was set.",
)  # fmt: skip


WARMUP_OPTION = click.option(
    "--warmup", type=float, default=20.0, show_default=True,
    help="Seconds the sessions stream first, not counted (models' first calls, group join).",
)  # fmt: skip


@bench.command(name="calls")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder of audio files plus labels.tsv (file, speaker, transcript columns) or transcripts.tsv.",
)
@click.option("--calls", type=int, default=4, show_default=True, help="Calls built and streamed (two speakers each).")
@WORKERS_OPTION
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_calls(data: Path, calls: int, workers: int, settings: dict[str, str], as_json: bool) -> None:
    """Two-party stereo calls in real time: each party's WER in the call against the party streamed alone."""
    from moodstream.cli.bench.calls import main as run

    run(data, calls, workers, settings, as_json)


@bench.command(name="load")
@click.option("--sessions", type=int, default=8, show_default=True, help="Concurrent real-time clients.")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds each client streams.")
@WORKERS_OPTION
@AUDIO_OPTION
@FRAME_MS_OPTION
@PARTIALS_OPTION
@REPORT_OPTION
@INTERVAL_OPTION
@WARMUP_OPTION
@CHANNELS_OPTION
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_load(
    sessions: int,
    duration: float,
    workers: int,
    audio: Path | None,
    frame_ms: int,
    partials: bool,
    report: Path | None,
    interval: float,
    warmup: float,
    channels: int,
    settings: dict[str, str],
    as_json: bool,
) -> None:
    """N real-time sessions of real speech through the whole stack: latency, losses, lag, CPU and RSS."""
    from moodstream.cli.bench.load import DEFAULT_AUDIO, LoadOptions, run_load

    options = LoadOptions(sessions, duration, workers, audio or DEFAULT_AUDIO, frame_ms, partials, report, interval,
                          warmup, channels, settings)  # fmt: skip
    run_load(options, as_json)


@bench.command(name="soak")
@click.option("--sessions", type=int, default=10, show_default=True, help="Concurrent real-time clients.")
@click.option("--duration", type=float, default=3600.0, show_default=True, help="Seconds each client streams.")
@WORKERS_OPTION
@click.option("--report", type=click.Path(path_type=Path), default=Path("soak-report"), show_default=True,
              help="Folder for intervals.jsonl and soak.png, written as the run goes.")  # fmt: skip
@INTERVAL_OPTION
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_soak(
    sessions: int, duration: float, workers: int, report: Path, interval: float, settings: dict[str, str], as_json: bool
) -> None:
    """`bench load` for an hour with a report per interval (p95, results, CPU and RSS per process) and a plot."""
    from moodstream.cli.bench.load import LoadOptions, run_load

    options = LoadOptions(sessions, duration, workers, report_dir=report, interval_s=interval, settings=settings)
    run_load(options, as_json)


@bench.command(name="idle")
@click.option("--seconds", type=float, default=60.0, show_default=True, help="Seconds with no client connected.")
@click.option("--workers", type=int, default=Settings.model_fields["workers"].default, show_default=True,
              help="Processor worker processes (default: as many as `moodstream up` starts).")  # fmt: skip
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_idle(seconds: float, workers: int, settings: dict[str, str], as_json: bool) -> None:
    """The whole stack at rest: each process's CPU while nobody talks, and the next session's first result."""
    from moodstream.cli.bench.idle import run_idle

    run_idle(seconds, workers, settings, as_json)


@bench.command(name="faults")
@click.option("--sessions", type=int, default=4, show_default=True, help="Concurrent real-time clients.")
@click.option("--broker-outage", type=float, default=10.0, show_default=True, help="Seconds the broker is away.")
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_faults(sessions: int, broker_outage: float, settings: dict[str, str], as_json: bool) -> None:
    """Kill a worker, restart the gateway, take the broker away, while sessions stream: losses, duplicates, recovery."""
    from moodstream.cli.bench.faults import FaultOptions
    from moodstream.cli.bench.faults import main as run

    run(FaultOptions(sessions=sessions, broker_outage_s=broker_outage, settings=settings), as_json)


@bench.command(name="capacity")
@click.option("--start", type=int, default=4, show_default=True, help="First number of sessions tried.")
@click.option("--step", type=int, default=4, show_default=True, help="Sessions added per round.")
@click.option("--duration", type=float, default=120.0, show_default=True, help="Seconds per round.")
@WORKERS_OPTION
@click.option("--p95-ms", type=float, default=1200.0, show_default=True, help="End-to-end p95 bar.")
@click.option("--max-lag-slope", type=float, default=100.0, show_default=True, help="Lag growth bar, ms per minute.")
@AUDIO_OPTION
@FRAME_MS_OPTION
@PARTIALS_OPTION
@WARMUP_OPTION
@CHANNELS_OPTION
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line.")
def bench_capacity(
    start: int,
    step: int,
    duration: float,
    workers: int,
    p95_ms: float,
    max_lag_slope: float,
    audio: Path | None,
    frame_ms: int,
    partials: bool,
    warmup: float,
    channels: int,
    settings: dict[str, str],
    as_json: bool,
) -> None:
    """The largest N with p95 end-to-end within the bar, nothing lost and no growing lag (each round on a fresh stack,
    warmed up first). With `--channels 2` the clients are calls, and each counts as two sessions."""
    from moodstream.cli.bench.load import DEFAULT_AUDIO, LoadOptions, run_capacity

    options = LoadOptions(duration_s=duration, workers=workers, audio=audio or DEFAULT_AUDIO, frame_ms=frame_ms,
                          partials=partials, warmup_s=warmup, channels=channels, settings=settings)  # fmt: skip
    run_capacity(options, start, step, p95_ms, max_lag_slope, as_json)
