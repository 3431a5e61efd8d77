"""The wire contract every part of moodstream imports: topics, versioned records, codec, WebSocket protocol."""

from moodstream.schemas.audio import SAMPLE_RATE
from moodstream.schemas.codec import SchemaError, SchemaVersionError, decode, encode, is_schema

__all__ = ["SAMPLE_RATE", "SchemaError", "SchemaVersionError", "decode", "encode", "is_schema"]
