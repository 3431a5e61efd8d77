"""The wire contract every part of moodstream imports: topics, versioned records, codec, WebSocket protocol."""

from schemas.codec import SchemaError, SchemaVersionError, decode, encode, is_schema
from schemas.records import SAMPLE_RATE

__all__ = ["SAMPLE_RATE", "SchemaError", "SchemaVersionError", "decode", "encode", "is_schema"]
