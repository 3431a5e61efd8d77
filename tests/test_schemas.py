"""The wire contract: round trips, raw PCM, version and schema checks, JSON Schema drift."""

from __future__ import annotations

import json
import struct

import pytest

from moodstream.schemas import SchemaError, SchemaVersionError, decode, encode, is_schema
from moodstream.schemas.jsonschema import main as check_json_schemas
from moodstream.schemas.records import (
    RECORD_TYPES,
    AcousticScore,
    AudioFrame,
    ConnectionClaimed,
    DeadLetter,
    FusedResult,
    SentimentScores,
    SessionControl,
    Utterance,
)
from moodstream.schemas.topics import ALL_TOPICS

PCM = bytes(range(256)) * 10  # 2560 bytes, every byte value, even length


def header_of(raw: bytes) -> dict:
    _magic, _ver, length = struct.unpack_from(">2sBI", raw)
    return json.loads(raw[7 : 7 + length])


def test_audio_frame_round_trip_carries_raw_pcm_after_the_header() -> None:
    frame = AudioFrame(session_id="s1", seq=3, start_sample=960, received_at_ms=1.5, pcm=PCM)
    raw = encode(frame)
    assert raw.endswith(PCM)  # raw bytes, not base64 or a JSON array
    assert "pcm" not in header_of(raw)["data"]
    assert header_of(raw)["schema"] == "audio_frame" and header_of(raw)["v"] == 1
    assert decode(raw, (AudioFrame,)) == frame


def test_every_record_type_round_trips() -> None:
    scores = SentimentScores(negative=0.1, neutral=0.2, positive=0.7)
    samples = [
        AudioFrame(session_id="a", seq=0, start_sample=0, received_at_ms=0, pcm=b"\x00\x01"),
        SessionControl(session_id="a", action="end", next_seq=5, reason="disconnect", at_ms=2),
        ConnectionClaimed(session_id="a", connection_id="c1", instance_id="g1", at_ms=3),
        Utterance(
            session_id="a",
            utterance_seq=1,
            start_ms=10,
            end_ms=900,
            end_reason="silence",
            pcm_start_ms=0,
            gated="too_quiet",
            last_frame_received_at_ms=5,
            pcm=PCM,
        ),
        AcousticScore(
            session_id="a",
            utterance_seq=0,
            window_seq=None,
            start_ms=0,
            end_ms=500,
            sentiment=scores,
            emotions={"happy": 0.9},
            model_version="m1",
            compute_ms=1.0,
            received_at_ms=0,
        ),
        FusedResult(
            session_id="a",
            utterance_seq=0,
            final=True,
            start_ms=0,
            end_ms=1,
            text="hi",
            text_sentiment=scores,
            audio_sentiment=None,
            fused_score=0.5,
            fused_label="positive",
            weights={"text": 1.0, "audio": 0.0},
            latencies_ms={},
            model_versions={},
        ),
        DeadLetter(
            source_topic="t", partition=0, offset=1, key=None, error="e", consumer="c", at_ms=0, value=b"\xff\x00"
        ),
    ]
    for record in samples:
        assert decode(encode(record)) == record
        # the cheap header test agrees with decoding, for every pair of types
        assert [is_schema(encode(record), kind) for kind in RECORD_TYPES] == [type(record) is k for k in RECORD_TYPES]
    assert {type(s) for s in samples} <= set(RECORD_TYPES)


def test_version_mismatch_is_a_clear_error() -> None:
    raw = encode(SessionControl(session_id="a", action="start", next_seq=0, at_ms=0))
    header = header_of(raw)
    header["v"] = 99
    body = json.dumps(header).encode()
    tampered = struct.pack(">2sBI", b"MS", 1, len(body)) + body
    with pytest.raises(SchemaVersionError, match="version 99"):
        decode(tampered)


def test_unexpected_unknown_and_garbage_records_are_rejected() -> None:
    control = encode(SessionControl(session_id="a", action="start", next_seq=0, at_ms=0))
    with pytest.raises(SchemaError, match="not expected"):
        decode(control, (Utterance,))
    with pytest.raises(SchemaError):
        decode(b"hello world, not a record")
    with pytest.raises(SchemaError):
        decode(b"")


def test_field_validation_failures_are_schema_errors() -> None:
    raw = encode(AudioFrame(session_id="s", seq=0, start_sample=0, received_at_ms=0, pcm=b"\x00\x00"))
    with pytest.raises(SchemaError, match="even byte count"):
        decode(raw + b"\x01")  # one stray byte: not whole int16 samples
    header = header_of(raw)
    header["data"]["seq"] = -1
    body = json.dumps(header).encode()
    with pytest.raises(SchemaError, match="seq"):
        decode(struct.pack(">2sBI", b"MS", 1, len(body)) + body + b"\x00\x00")


def test_topics_declare_only_known_schemas() -> None:
    names = {r.SCHEMA for r in RECORD_TYPES}
    for spec in ALL_TOPICS:
        assert set(spec.schemas) <= names, spec.name


def test_checked_in_json_schemas_match_the_models() -> None:
    assert check_json_schemas(["--check"]) == 0, "run `moodstream schemas` and commit schemas/json"


def test_asyncapi_document_covers_every_topic_and_resolves_its_refs() -> None:
    from moodstream.schemas.jsonschema import JSON_DIR

    document = json.loads((JSON_DIR / "asyncapi.json").read_text())
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {"/ws/analyze"} | {t.name for t in ALL_TOPICS}
    for message in document["components"]["messages"].values():
        assert (JSON_DIR / message["payload"]["$ref"].removeprefix("./")).exists()
