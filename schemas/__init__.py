"""The wire contract every part of moodstream imports: topics, versioned records, codec, WebSocket protocol."""

from schemas.audio import SAMPLE_RATE
from schemas.codec import SchemaError, SchemaVersionError, decode, encode, is_schema

__all__ = ["SAMPLE_RATE", "SchemaError", "SchemaVersionError", "decode", "encode", "is_schema"]
