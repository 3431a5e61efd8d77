"""Versioned records: every message that crosses a process boundary (Kafka topics and the WebSocket).

Each record class names its schema and version. The codec (schemas.codec) frames them on Kafka; records that
carry audio keep the PCM out of the JSON and ship it as raw bytes after the header.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moodstream.schemas.audio import SAMPLE_RATE

__all__ = ["SAMPLE_RATE"]  # re-exported: records state their audio in the protocol's one format

SessionId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Role = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")]
"""A party's name in a call (e.g. "agent", "customer")."""
SentimentLabel = Literal["negative", "neutral", "positive"]
EmotionLabel = Literal["angry", "happy", "sad", "neutral"]
MAX_CHANNELS = 2
"""A session is mono (1) or a call of two parties, one per channel (2)."""
DEFAULT_ROLES: dict[int, tuple[str, ...]] = {2: ("left", "right")}
"""Roles of a call whose start names none."""


def call_utterance_seq(index: int, channel: int, channels: int) -> int:
    """The session-wide seq of a channel's `index`-th utterance: the channels' utterances interleave
    (k × channels + channel), so each channel numbers its own without a counter shared across channels, a replay
    numbers them again the same way, and a mono session's seqs are 0, 1, 2, ..."""
    return index * channels + channel


class Record(BaseModel):
    """Base of every record: immutable, unknown fields rejected."""

    def identity(self) -> tuple[object, ...]:
        """What makes this record unique within its session: a replayed duplicate has the same identity."""
        return (self.SCHEMA, *(getattr(self, f) for f in self.IDENTITY))

    IDENTITY: ClassVar[tuple[str, ...]] = ()

    model_config = ConfigDict(extra="forbid", frozen=True)

    SCHEMA: ClassVar[str]
    """Schema name, unique across the contract."""
    VERSION: ClassVar[int]
    """Schema version; bumped on any incompatible change."""
    BINARY_FIELD: ClassVar[str | None] = None
    """Name of the bytes field shipped raw after the JSON header, if any."""


class ChannelTag(BaseModel):
    """Which party of a call a record is about. Mono sessions: channel 0, no role."""

    channel: Annotated[int, Field(ge=0, lt=MAX_CHANNELS)] = 0
    """The session channel (0 left, 1 right) the audio came from."""
    role: Role | None = None
    """The channel's role from the session's start options (None in a mono session)."""


class PcmRecord(Record):
    """A record that carries 16 kHz mono int16 PCM."""

    BINARY_FIELD: ClassVar[str | None] = "pcm"

    @field_validator("pcm", check_fields=False)
    @classmethod
    def _whole_samples(cls, value: bytes) -> bytes:
        if len(value) % 2:
            raise ValueError("pcm must hold whole int16 samples (an even byte count)")
        return value


class SessionOptions(BaseModel):
    """Per-session options a client may set in its start message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Literal["en"] = "en"
    """Spoken language; English is the only one the shipped models serve, so any other is refused (bad_start)."""
    fusion_alpha: Probability | None = None
    """Weight of the text score in late fusion; None uses the server default."""
    partials: bool = True
    """Send `partial` transcripts with text sentiment while an utterance is still open (when the worker has time)."""
    channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)] = 1
    """Channels interleaved in each binary frame (int16 little-endian, left sample first). 2: a call, one party per
    channel; each channel is endpointed, transcribed and judged on its own and every result says which."""
    roles: tuple[Role, ...] | None = None
    """The parties' names, one per channel (e.g. ["agent", "customer"]); results carry them as `role`. Default for
    2 channels "left", "right"; a mono session without roles has none."""

    @model_validator(mode="after")
    def _a_role_per_channel(self) -> SessionOptions:
        if self.roles is not None and (len(self.roles) != self.channels or len(set(self.roles)) != self.channels):
            raise ValueError(f"roles must name each of the {self.channels} channels once")
        return self

    def role_names(self) -> tuple[str, ...] | None:
        """The roles in channel order (None for a mono session without roles)."""
        return self.roles or DEFAULT_ROLES.get(self.channels)


class AudioFrame(PcmRecord):
    """A slice of client audio as received by the gateway: one client frame, or consecutive ones joined up to the
    gateway's ``audio_batch_ms``."""

    SCHEMA: ClassVar[str] = "audio_frame"
    VERSION: ClassVar[int] = 1

    session_id: SessionId
    seq: Annotated[int, Field(ge=0)]
    """Record number within one connection of the session, from 0 (it restarts when a client resumes)."""
    start_sample: Annotated[int, Field(ge=0)]
    """Offset of the first sample in session time (samples since the session started); orders frames across
    resumed connections, and a frame the worker already has is recognised by it."""
    received_at_ms: float
    """Gateway wall clock (Unix ms) when the slice's first frame arrived; the start of end-to-end latency."""
    channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)] = 1
    """Channels interleaved in `pcm` (the session's `channels` option); `start_sample` counts sample frames."""
    pcm: bytes = Field(repr=False)

    @model_validator(mode="after")
    def _whole_sample_frames(self) -> AudioFrame:
        if len(self.pcm) % (2 * self.channels):
            raise ValueError(f"pcm must hold whole frames of {self.channels} int16 samples")
        return self

    @property
    def samples(self) -> int:
        """Sample frames (per channel) in `pcm`."""
        return len(self.pcm) // (2 * self.channels)


class SessionControl(Record):
    """Start or end of a session, on the audio topic in order with its frames."""

    SCHEMA: ClassVar[str] = "session_control"
    VERSION: ClassVar[int] = 1

    session_id: SessionId
    action: Literal["start", "end"]
    next_seq: Annotated[int, Field(ge=0)]
    """For start 0 (or the resume point); for end the number of audio records sent."""
    options: SessionOptions = SessionOptions()
    reason: Literal["client", "disconnect", "idle", "max_duration", "server"] = "client"
    """Why an end was sent."""
    at_ms: float
    """Gateway wall clock (Unix ms)."""


class Utterance(PcmRecord, ChannelTag):
    """One finished stretch of speech, cut by the endpointer."""

    SCHEMA: ClassVar[str] = "utterance"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq",)

    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    start_ms: Annotated[float, Field(ge=0)]
    end_ms: Annotated[float, Field(ge=0)]
    end_reason: Literal["silence", "max_length", "session_end"]
    pcm_start_ms: Annotated[float, Field(ge=0)]
    """Session time of the first PCM sample (the PCM has padding around start_ms..end_ms)."""
    gated: Literal["too_short", "too_quiet"] | None = None
    """Set when the anti-hallucination gate keeps this utterance from ASR."""
    last_frame_received_at_ms: float
    """Gateway receipt time of the frame that closed the utterance (latency origin)."""
    fusion_alpha: Probability | None = None
    """The session's text weight from its start message, carried to fusion; None uses the server default."""
    pcm: bytes = Field(repr=False)


class AcousticWindow(PcmRecord, ChannelTag):
    """A short slice of an utterance in progress, for provisional acoustic scores."""

    SCHEMA: ClassVar[str] = "acoustic_window"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq", "window_seq")

    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    window_seq: Annotated[int, Field(ge=0)] | None
    """Window number inside the utterance; None for the whole-utterance window."""
    start_ms: float
    end_ms: float
    received_at_ms: float
    pcm: bytes = Field(repr=False)


class PartialAudio(PcmRecord, ChannelTag):
    """New audio of an utterance still open, for partial transcripts: consecutive chunks (by `chunk_seq`, from 0)
    that together hold the utterance's audio from its padded start. Disposable: a consumer that misses a chunk
    waits for the utterance's next one to start over."""

    SCHEMA: ClassVar[str] = "partial_audio"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq", "chunk_seq")

    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    chunk_seq: Annotated[int, Field(ge=0)]
    start_ms: Annotated[float, Field(ge=0)]
    """Session time of the chunk's first sample (for chunk 0: the utterance's padded start)."""
    end_ms: Annotated[float, Field(ge=0)]
    speech_start_ms: Annotated[float, Field(ge=0)]
    """Where the utterance's speech starts (the final result's `start_ms`)."""
    received_at_ms: float
    """Gateway wall clock (Unix ms) when the newest frame of the chunk arrived: a chunk heard long ago is not worth
    a partial any more."""
    pcm: bytes = Field(repr=False)


class SentimentScores(BaseModel):
    """Three-way sentiment distribution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    negative: Probability
    neutral: Probability
    positive: Probability

    @property
    def label(self) -> str:
        """The most probable of the three."""
        scores = {"negative": self.negative, "neutral": self.neutral, "positive": self.positive}
        return max(scores, key=scores.__getitem__)


class EmotionScores(BaseModel):
    """Four-way emotion distribution (the set IEMOCAP, SenseVoice and every corpus the voice learns from share)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    angry: Probability
    happy: Probability
    sad: Probability
    neutral: Probability


class AcousticScore(Record, ChannelTag):
    """Acoustic emotion of a window (provisional) or of a whole utterance."""

    SCHEMA: ClassVar[str] = "acoustic_score"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq", "window_seq")

    type: Literal["acoustic"] = "acoustic"
    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    window_seq: Annotated[int, Field(ge=0)] | None
    start_ms: float
    end_ms: float
    sentiment: SentimentScores
    emotions: dict[str, Probability]
    """Eight-way RAVDESS emotion probabilities."""
    model_version: str
    compute_ms: float
    received_at_ms: float
    arousal: Probability | None = None
    """How agitated the voice is, 0 calm … 1 agitated, from the window's prosody (`processors.voice_head`); None
    without a voice head."""


class Transcript(Record, ChannelTag):
    """ASR output for one utterance."""

    SCHEMA: ClassVar[str] = "transcript"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq",)

    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    start_ms: float
    end_ms: float
    text: str
    rejected: bool
    """True when the hallucination guard dropped the text (then text is empty)."""
    reject_reason: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    model_id: str
    compute_ms: float
    last_frame_received_at_ms: float
    fusion_alpha: Probability | None = None
    """The session's text weight from its start message, carried to fusion; None uses the server default."""
    voice_sentiment: SentimentScores | None = None
    """The voice's sentiment read from the ASR encoder's states and the prosody; None when the ASR model has no voice
    head."""
    voice_emotion: EmotionScores | None = None
    """The voice head's four-way emotion (before fusion's calm default); None without a voice head."""
    voice_arousal: Probability | None = None
    """The voice head's arousal, 0 calm … 1 agitated; None without a voice head."""
    voice_model: str | None = None
    """The voice head's version; None without a voice head."""


class PartialTranscript(Record, ChannelTag):
    """ASR of an utterance still open: the words so far (greedy, cheaper than the final's decode)."""

    SCHEMA: ClassVar[str] = "partial_transcript"
    VERSION: ClassVar[int] = 1

    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    revision: Annotated[int, Field(ge=1)]
    """1 for the utterance's first partial, then one more for each partial with new text."""
    start_ms: float
    end_ms: float
    """Session time up to which the audio was heard."""
    text: str
    model_id: str
    compute_ms: float


class TextScore(Record, ChannelTag):
    """Text sentiment of one transcript."""

    SCHEMA: ClassVar[str] = "text_score"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq",)

    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    text: str
    has_text: bool
    """False when there was no usable transcript; then the scores are uniform and ignored by fusion."""
    sentiment: SentimentScores
    label: SentimentLabel
    model_version: str
    compute_ms: float
    asr_avg_logprob: float | None = None
    """ASR confidence of the transcript (fusion lowers the text weight when it is low)."""
    asr_compute_ms: float = 0.0
    asr_model: str = ""
    start_ms: float = 0.0
    end_ms: float = 0.0
    last_frame_received_at_ms: float = 0.0
    fusion_alpha: Probability | None = None
    """The session's text weight from its start message, carried to fusion; None uses the server default."""
    voice_sentiment: SentimentScores | None = None
    """The transcript's `voice_sentiment`, carried to fusion."""
    voice_emotion: EmotionScores | None = None
    """The transcript's `voice_emotion`, carried to fusion."""
    voice_arousal: Probability | None = None
    """The transcript's `voice_arousal`, carried to fusion."""
    voice_model: str | None = None
    """The transcript's `voice_model`, carried to fusion."""


class FusionWeights(BaseModel):
    """The weights late fusion used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: Probability
    """α: the words' share of the fused distribution."""
    audio: Probability
    """1 − α: the voice's share."""
    voice_commitment: Probability | None = None
    """How far the voice's polar verdict counted (1 in full; 0: a voice this unsure was read as calm)."""


class FusedResult(Record, ChannelTag):
    """The per-utterance result a client receives."""

    SCHEMA: ClassVar[str] = "fused_result"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq", "revision")

    type: Literal["utterance"] = "utterance"
    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    revision: Annotated[int, Field(ge=0)] = 1
    """1 for the fused result; 0 for the acoustic-only result sent first when ASR is late (then 1 follows)."""
    final: bool
    """False for the degraded acoustic-only result that a fused one will replace."""
    start_ms: float
    end_ms: float
    text: str
    text_sentiment: SentimentScores | None
    audio_sentiment: SentimentScores | None
    fused_score: Annotated[float, Field(ge=-1.0, le=1.0)]
    fused_label: SentimentLabel
    weights: FusionWeights
    latencies_ms: dict[str, float]
    model_versions: dict[str, str]
    last_frame_received_at_ms: float = 0.0
    """Gateway receipt time of the utterance's last frame: the origin of end-to-end latency."""
    arousal: Probability | None = None
    """How agitated the voice was, 0 calm … 1 agitated: the voice head's on the whole utterance, or the windows'
    mean while the transcript is late; None without a voice head."""
    emotion: EmotionScores | None = None
    """Four-way emotion of the voice under fusion's calm default (`processors.fusion`); None without a voice head."""
    emotion_label: EmotionLabel | None = None
    """The most likely of `emotion`."""


class PartialResult(Record, ChannelTag):
    """Words so far and their sentiment while the speaker is still talking. Superseded by the utterance's final
    `utterance` result; a client shows no partial of an utterance whose final it already has."""

    SCHEMA: ClassVar[str] = "partial_result"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterance_seq", "revision")

    type: Literal["partial"] = "partial"
    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    revision: Annotated[int, Field(ge=1)]
    """Increases with each partial of the utterance that changed the text."""
    start_ms: float
    end_ms: float
    """Session time up to which the speech was heard."""
    text: str
    text_sentiment: SentimentScores


class AudioLevel(Record, ChannelTag):
    """Loudness of a stretch of session audio: the first stage's simple, real output."""

    SCHEMA: ClassVar[str] = "audio_level"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("channel", "start_ms")

    type: Literal["level"] = "level"
    session_id: SessionId
    start_ms: float
    end_ms: float
    rms_dbfs: float
    peak_dbfs: float


class VadEvent(Record, ChannelTag):
    """Speech started or stopped."""

    SCHEMA: ClassVar[str] = "vad_event"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("type", "utterance_seq")

    type: Literal["vad.speech_start", "vad.speech_end"]
    session_id: SessionId
    utterance_seq: Annotated[int, Field(ge=0)]
    at_ms: float


class SessionEnded(Record):
    """The processors have flushed the session; `utterances` results are (or will be) on the events topic."""

    SCHEMA: ClassVar[str] = "session_ended"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ()

    type: Literal["session.ended"] = "session.ended"
    session_id: SessionId
    utterances: Annotated[int, Field(ge=0)]
    awaiting_results: bool = False
    """True when an `utterance` result will follow for each of the `utterances` (a fusion stage runs)."""
    reason: str
    duration_ms: float
    channel_utterances: list[Annotated[int, Field(ge=0)]] | None = None
    """A call's utterances per channel (they add up to `utterances`); None for a mono session."""
    roles: tuple[Role, ...] | None = None
    """The parties' roles in channel order (None for a mono session without roles)."""
    awaiting_summary: bool = False
    """True when a `session.summary` of the `utterances` follows on the events topic (the fusion stage makes it)."""
    summary: SessionSummary | None = None
    """Set by the gateway on the `session.ended` a client gets: the session's summary per party."""

    def utterance_seqs(self) -> list[int]:
        """The seqs of the session's utterances (`call_utterance_seq` numbers a call's)."""
        if self.channel_utterances is None:
            return list(range(self.utterances))
        channels = len(self.channel_utterances)
        return sorted(
            call_utterance_seq(index, channel, channels)
            for channel, count in enumerate(self.channel_utterances)
            for index in range(count)
        )


class UtteranceRef(BaseModel):
    """One utterance, quoted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    utterance_seq: int
    start_ms: float
    end_ms: float
    fused_score: float
    text: str


class PartySummary(BaseModel):
    """How one party of a session spoke and felt (a mono session has one party)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: int
    role: str | None
    utterances: int
    """Utterances of the party with a final result."""
    talk_ms: float
    """Their speech, summed (each utterance from its start to its end)."""
    mean_score: float | None
    """Mean fused score (−1 … 1) of its utterances; None without any."""
    negative_share: float | None
    """Share of its utterances labelled negative."""
    most_negative: UtteranceRef | None
    """The utterance with the lowest fused score (the earliest of equals)."""
    first_quarter_score: float | None
    """Mean fused score of its utterances that started in the first quarter of the session (None: it said nothing
    there)."""
    last_quarter_score: float | None
    """The same for the last quarter."""
    score_change: float | None
    """`last_quarter_score` − `first_quarter_score`: above 0 it ended better than it began."""
    overlap_ms: float
    """Its speech while another party was speaking too."""
    interruptions: int
    """Its utterances that started while another party's was under way."""


class SessionSummary(Record):
    """A session's summary per party, made once every final result of an ended session is in; the gateway puts it
    on the client's `session.ended`. A session resumed after a disconnect is summarised again at its next end."""

    SCHEMA: ClassVar[str] = "session_summary"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("utterances", "reason")

    type: Literal["session.summary"] = "session.summary"
    session_id: SessionId
    reason: str
    """The end's reason (as on `session.ended`)."""
    duration_ms: float
    utterances: int
    """Utterances summarised (the end's count)."""
    parties: list[PartySummary]
    """One per channel, in channel order."""
    silence_share: float
    """Share of the session in which nobody spoke."""


SessionEnded.model_rebuild()  # its `summary` is a SessionSummary, defined after it


class TalliedUtterance(BaseModel):
    """What a summary needs of one final result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    channel: int
    start_ms: float
    end_ms: float
    score: float
    negative: bool


class SessionTally(Record):
    """The fusion stage's running tally of a session's final results, from which its summary is made; the latest
    per session is kept (compacted, keyed by session), written before the scores of the results it counts are acked,
    so a worker taking the session over continues it."""

    SCHEMA: ClassVar[str] = "session_tally"
    VERSION: ClassVar[int] = 1

    session_id: SessionId
    results: list[TalliedUtterance] = []
    """Every final result counted, in the order counted."""
    lowest: list[UtteranceRef | None] = []
    """Per channel, its most negative utterance so far (with its words)."""
    ended: SessionEnded | None = None
    """The session's latest end (a disconnect may be followed by a resume and another end)."""
    summarized: bool = False
    """The summary of `ended` was sent."""


class ConnectionClaimed(Record):
    """A gateway accepted a connection for this session (new or resumed). Every gateway reads the events topic, so
    the one holding an older connection of the session, on any instance, closes it (`session_taken_over`): a
    session has one socket. Gateways only; never sent to a client."""

    SCHEMA: ClassVar[str] = "connection_claimed"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("connection_id",)

    session_id: SessionId
    connection_id: str
    """Unique per connection (a resume gets a new one)."""
    instance_id: str
    """The gateway instance holding it."""
    at_ms: float
    """Gateway wall clock (Unix ms)."""


class ErrorEvent(Record):
    """An error concerning one session, with a documented code (see schemas.errors)."""

    SCHEMA: ClassVar[str] = "error_event"
    VERSION: ClassVar[int] = 1
    IDENTITY: ClassVar[tuple[str, ...]] = ("code", "message")

    type: Literal["error"] = "error"
    session_id: SessionId
    code: str
    message: str


class ChannelPosition(BaseModel):
    """Where one channel of a call stands, as of its last cut."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    next_index: Annotated[int, Field(ge=0)]
    """Utterances the channel has cut; its next one is `call_utterance_seq(next_index, channel, channels)`."""
    resume_sample: Annotated[int, Field(ge=0)]
    """Session sample to resume the channel's endpointing at."""


class SessionCheckpoint(Record):
    """What a worker taking a session over needs to continue it exactly; the latest per session is kept (a compacted
    topic, keyed by session, in the partition of the session's audio). A session that ended for good has a
    tombstone (no value) instead."""

    SCHEMA: ClassVar[str] = "session_checkpoint"
    VERSION: ClassVar[int] = 1

    session_id: SessionId
    next_utterance_seq: Annotated[int, Field(ge=0)]
    """The seq the session's next utterance gets."""
    resume_sample: Annotated[int, Field(ge=0)]
    """Session sample to resume endpointing at: audio before it was already cut and sent."""
    fusion_alpha: Probability | None = None
    """The session's own text weight from its start message (None: the server default)."""
    partials: bool = True
    """The session's `partials` option from its start message."""
    roles: tuple[Role, ...] | None = None
    """A call's roles from its start message."""
    channels: list[ChannelPosition] | None = None
    """A call's position per channel, each kept as of that channel's last cut (the fields above then hold the
    utterances cut so far and the earliest channel's resume sample); None for a mono session."""


class WorkerHeartbeat(Record):
    """A processor worker is alive and owns these partitions of the audio topic."""

    SCHEMA: ClassVar[str] = "worker_heartbeat"
    VERSION: ClassVar[int] = 1

    worker_id: str
    audio_partitions: list[int]
    at_ms: float
    models: dict[str, str] = {}
    handed_off: int = 0
    """Records this worker's stages have handed to its own next stages since it started (beside their topics)."""
    finals: int = 0
    """Utterances this worker's ASR has started to transcribe since it started."""
    finals_hurried: int = 0
    """Of those, the ones decoded in a hurry: other finals waited behind them (`MOODSTREAM_ASR_CATCH_UP`)."""


class DeadLetter(Record):
    """A record a consumer could not decode or process; the raw value travels as the payload."""

    SCHEMA: ClassVar[str] = "dead_letter"
    VERSION: ClassVar[int] = 1
    BINARY_FIELD: ClassVar[str | None] = "value"

    source_topic: str
    partition: int
    offset: int
    key: str | None
    error: str
    consumer: str
    at_ms: float
    value: bytes = Field(repr=False)


RECORD_TYPES: tuple[type[Record], ...] = (
    AudioFrame,
    SessionControl,
    Utterance,
    AcousticWindow,
    PartialAudio,
    AcousticScore,
    Transcript,
    PartialTranscript,
    TextScore,
    FusedResult,
    PartialResult,
    AudioLevel,
    VadEvent,
    SessionEnded,
    SessionSummary,
    SessionTally,
    ConnectionClaimed,
    ErrorEvent,
    SessionCheckpoint,
    WorkerHeartbeat,
    DeadLetter,
)
BY_SCHEMA: dict[str, type[Record]] = {r.SCHEMA: r for r in RECORD_TYPES}
