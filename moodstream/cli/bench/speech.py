"""Real speech with transcripts for benchmarks: the Debian asterisk prompts (see ../shared/README.md)."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from moodstream.cli.bench import unusable

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


@dataclass(frozen=True)
class Prompt:
    path: Path
    text: str


def asterisk_prompts(benchmark: str) -> list[Prompt]:
    """Prompts that have a spoken transcript (bracketed non-speech entries skipped), sorted by name; without the
    Debian packages, `benchmark` says which to install in one line and exits 2."""
    sounds, transcripts = ASTERISK_SOUNDS, ASTERISK_TRANSCRIPTS
    if not transcripts.exists() or not sounds.exists():
        unusable(
            benchmark,
            "asterisk prompts not installed: apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en",
        )
    texts: dict[str, str] = {}
    with gzip.open(transcripts, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = text.strip()
            if not text or re.fullmatch(r"[\[(].*[\])]", text):
                continue
            texts[name.strip()] = text
    prompts = []
    for name, text in sorted(texts.items()):
        path = sounds / f"{name}.g722"
        if path.exists():
            prompts.append(Prompt(path, text))
    return prompts
