"""Generate the checked-in JSON Schema files from the models: ``python -m schemas.jsonschema [--check]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas import websocket
from schemas.records import RECORD_TYPES
from schemas.topics import ALL_TOPICS

JSON_DIR = Path(__file__).parent / "json"


def generated() -> dict[str, str]:
    """File name → content of every schema file."""
    files: dict[str, str] = {}
    for record in RECORD_TYPES:
        schema = record.model_json_schema()
        schema["$id"] = f"moodstream:{record.SCHEMA}:v{record.VERSION}"
        schema["x-moodstream"] = {
            "schema": record.SCHEMA,
            "version": record.VERSION,
            "binary_field": record.BINARY_FIELD,
            "topics": [t.name for t in ALL_TOPICS if record.SCHEMA in t.schemas],
        }
        files[f"{record.SCHEMA}.v{record.VERSION}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    ws_models: list[type[BaseModel]] = [
        websocket.StartMessage,
        websocket.EndMessage,
        websocket.PingMessage,
        websocket.SessionStarted,
        websocket.Pong,
        websocket.ErrorMessage,
    ]
    for model in ws_models:
        schema = model.model_json_schema()
        files[f"ws.{model.__name__}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    wanted = generated()
    present = {p.name: p.read_text() for p in JSON_DIR.glob("*.json")}
    if check:
        drift = sorted(set(wanted) ^ set(present) | {n for n in wanted if present.get(n) != wanted[n]})
        for name in drift:
            print(f"drift: schemas/json/{name}")
        return 1 if drift else 0
    JSON_DIR.mkdir(exist_ok=True)
    for name in set(present) - set(wanted):
        (JSON_DIR / name).unlink()
    for name, content in wanted.items():
        (JSON_DIR / name).write_text(content)
    print(f"wrote {len(wanted)} schema files to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
