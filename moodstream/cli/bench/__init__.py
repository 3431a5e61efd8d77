"""Benchmarks behind `moodstream bench …`: each prints progress to stderr and one JSON object as its last line."""

from __future__ import annotations

import json
import shutil
import sys
from typing import NoReturn


def report(result: dict, as_json: bool) -> None:
    """A readable table on stderr unless `as_json`, then the result as one JSON line on stdout (always last)."""
    if not as_json:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:>{width}}: {value}", file=sys.stderr)
    print(json.dumps(result), flush=True)


def unusable(benchmark: str, message: str) -> NoReturn:
    """A benchmark without its data or tool: one line on stderr saying what to install or pass, exit status 2."""
    print(f"bench {benchmark}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def require_tool(benchmark: str, tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        unusable(benchmark, f"{tool} not found: apt-get install {package}")
