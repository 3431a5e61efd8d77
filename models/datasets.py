"""Readers of the labelled text sets training and benchmarks share (tab-separated, header first, fields never
quoted: some sentences start with `"`)."""

from __future__ import annotations

import csv
from pathlib import Path


def read_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a TSV file with a header, as a dict."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_sst2(path: Path) -> tuple[list[str], list[int]]:
    """SST-2 style rows: sentences and 0/1 labels (1 positive)."""
    rows = read_rows(path)
    return [row["sentence"].strip() for row in rows], [int(row["label"]) for row in rows]
