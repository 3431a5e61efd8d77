"""Benchmarks behind `moodstream bench …`: each prints progress to stderr and one JSON object as its last line."""

from __future__ import annotations

import json
import sys


def report(result: dict, as_json: bool) -> None:
    """A readable table on stderr unless `as_json`, then the result as one JSON line on stdout (always last)."""
    if not as_json:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:>{width}}: {value}", file=sys.stderr)
    print(json.dumps(result), flush=True)
