"""Every Kafka topic of the system: its name, partition count, key and the record schemas it carries.

All session-scoped topics share one partition count and are keyed by the session id (UTF-8), so every record of
a session lands on the same partition number of every topic (co-partitioning): a worker that owns partition p of
the audio topic also owns partition p of the downstream topics it joins.
"""

from __future__ import annotations

from dataclasses import dataclass

SESSION_PARTITIONS = 8
"""Partitions of every session-keyed topic; the most processor workers one stage can usefully run."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the wire contract."""

    name: str
    """Kafka topic name."""
    partitions: int
    """Partition count the broker must create it with."""
    key: str
    """What the record key is."""
    schemas: tuple[str, ...]
    """Schema names (see schemas.records) of the records it carries."""
    retention_ms: int | None = None
    """Topic retention; None leaves the broker default."""
    compacted: bool = False
    """Keep only the latest record per key (cleanup.policy=compact) instead of deleting by age."""


AUDIO = TopicSpec(
    "moodstream.audio",
    SESSION_PARTITIONS,
    "session id",
    ("audio_frame", "session_control"),
    retention_ms=3_600_000,
)
UTTERANCES = TopicSpec("moodstream.utterances", SESSION_PARTITIONS, "session id", ("utterance",))
ACOUSTIC_WINDOWS = TopicSpec("moodstream.acoustic-windows", SESSION_PARTITIONS, "session id", ("acoustic_window",))
PARTIAL_AUDIO = TopicSpec("moodstream.partial-audio", SESSION_PARTITIONS, "session id", ("partial_audio",))
"""Audio of open utterances in ~1 s chunks, for partial transcripts (only for sessions that want partials)."""
ACOUSTIC_SCORES = TopicSpec(
    "moodstream.acoustic-scores", SESSION_PARTITIONS, "session id", ("acoustic_score", "session_ended")
)
"""The voice's scores, and each session's end (the fusion stage summarises a session once its results are in)."""
TRANSCRIPTS = TopicSpec(
    "moodstream.transcripts", SESSION_PARTITIONS, "session id", ("transcript", "partial_transcript")
)
TEXT_SCORES = TopicSpec("moodstream.text-scores", SESSION_PARTITIONS, "session id", ("text_score",))
EVENTS = TopicSpec(
    "moodstream.events",
    SESSION_PARTITIONS,
    "session id",
    (
        "audio_level",
        "vad_event",
        "acoustic_score",
        "partial_result",
        "fused_result",
        "session_ended",
        "session_summary",
        "error_event",
        "connection_claimed",
    ),
)
"""Everything a client sees about its session, in order per session; gateways relay it, analytics read it."""
CHECKPOINTS = TopicSpec(
    "moodstream.checkpoints", SESSION_PARTITIONS, "session id", ("session_checkpoint",), compacted=True
)
"""The audio stage's per-session checkpoints; a worker reads a partition's when it takes the partition over."""
TALLIES = TopicSpec("moodstream.tallies", SESSION_PARTITIONS, "session id", ("session_tally",), compacted=True)
"""The fusion stage's running tally per session, for its summary; a worker reads a partition's when it takes it
over."""
HEALTH = TopicSpec("moodstream.health", 1, "worker id", ("worker_heartbeat",), retention_ms=600_000)
DEAD_LETTER = TopicSpec("moodstream.dead-letter", 1, "source topic", ("dead_letter",))

ALL_TOPICS: tuple[TopicSpec, ...] = (
    AUDIO,
    UTTERANCES,
    ACOUSTIC_WINDOWS,
    PARTIAL_AUDIO,
    ACOUSTIC_SCORES,
    TRANSCRIPTS,
    TEXT_SCORES,
    EVENTS,
    CHECKPOINTS,
    TALLIES,
    HEALTH,
    DEAD_LETTER,
)


def murmur2(data: bytes) -> int:
    """Kafka's key hash (the Java client's ``Utils.murmur2``; librdkafka ``murmur2_random`` and aiokafka agree)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if tail:
        for shift, byte in reversed(list(enumerate(tail))):
            h ^= byte << (8 * shift)
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def partition_for(key: str, partitions: int = SESSION_PARTITIONS) -> int:
    """The partition a producer puts ``key`` on: every client of the system must agree, or co-partitioning breaks."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def topic(name: str) -> TopicSpec:
    """The spec of a topic by name (KeyError if it is not part of the contract)."""
    return {t.name: t for t in ALL_TOPICS}[name]
