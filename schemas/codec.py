"""Binary framing of records on Kafka: ``b"MS" | u8 framing version | u32 header length | JSON header | payload``.

The JSON header is ``{"schema": name, "v": version, "data": {...}}``. A record's binary field (PCM) is the payload,
raw: never base64, never a JSON array. Decoding validates the schema name against what the topic may carry, the
version and every field; any failure raises :class:`SchemaError`, which consumers route to the dead-letter topic.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import TypeVar

from pydantic import ValidationError

from moodstream.schemas.records import BY_SCHEMA, Record

MAGIC = b"MS"
FRAMING_VERSION = 1
_PREFIX = struct.Struct(">2sBI")

R = TypeVar("R", bound=Record)


class SchemaError(ValueError):
    """A record that breaks the contract: undecodable, unknown or unexpected schema, wrong version, bad field."""


class SchemaVersionError(SchemaError):
    """The record's schema is known but its version is not the one this build speaks."""


def encode(record: Record) -> bytes:
    """Frame a record for Kafka."""
    binary = record.BINARY_FIELD
    data = record.model_dump(mode="json", exclude={binary} if binary else None)
    header = json.dumps({"schema": record.SCHEMA, "v": record.VERSION, "data": data}, separators=(",", ":")).encode()
    payload = getattr(record, binary) if binary else b""
    return b"".join((_PREFIX.pack(MAGIC, FRAMING_VERSION, len(header)), header, payload))


def is_schema(raw: bytes, record_type: type[Record]) -> bool:
    """Whether a framed record claims ``record_type``'s schema, read off the header's start without decoding: for
    consumers that skip most records (``decode`` still validates the ones they keep)."""
    head = b'{"schema":"' + record_type.SCHEMA.encode() + b'"'
    return raw.startswith(head, _PREFIX.size)


def decode(raw: bytes, expected: Iterable[type[R]] | None = None) -> R:
    """Parse and validate a framed record; ``expected`` limits which record types are acceptable."""
    if len(raw) < _PREFIX.size:
        raise SchemaError(f"record of {len(raw)} bytes is shorter than the frame prefix")
    magic, framing, header_len = _PREFIX.unpack_from(raw)
    if magic != MAGIC:
        raise SchemaError("not a moodstream record (bad magic)")
    if framing != FRAMING_VERSION:
        raise SchemaVersionError(f"framing version {framing}, this build speaks {FRAMING_VERSION}")
    end = _PREFIX.size + header_len
    if end > len(raw):
        raise SchemaError("header length runs past the end of the record")
    try:
        header = json.loads(raw[_PREFIX.size : end])
        name, version, data = header["schema"], header["v"], header["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"unreadable header: {exc}") from exc
    cls = BY_SCHEMA.get(name)
    if cls is None:
        raise SchemaError(f"unknown schema {name!r}")
    allowed = tuple(expected) if expected is not None else None
    if allowed is not None and cls not in allowed:
        raise SchemaError(f"schema {name!r} is not expected here (expected {[c.SCHEMA for c in allowed]})")
    if version != cls.VERSION:
        raise SchemaVersionError(f"schema {name!r} version {version}, this build speaks version {cls.VERSION}")
    if not isinstance(data, dict):
        raise SchemaError("header data is not an object")
    if cls.BINARY_FIELD:
        data = {**data, cls.BINARY_FIELD: raw[end:]}
    elif len(raw) > end:
        raise SchemaError(f"schema {name!r} carries no payload but {len(raw) - end} bytes follow the header")
    try:
        return cls.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        raise SchemaError(f"invalid {name} v{version}: {exc.errors(include_url=False)}") from exc
