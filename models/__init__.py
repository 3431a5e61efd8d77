"""Model artifacts shipped with moodstream, and the scripts that train and export them (training needs the
``train`` extra; serving never imports those scripts)."""

from __future__ import annotations

import hashlib
from pathlib import Path

MODELS_DIR = Path(__file__).parent
TEXT_MODEL_DIR = MODELS_DIR / "text"
ACOUSTIC_MODEL_DIR = MODELS_DIR / "acoustic"


def sha256_of(path: Path) -> str:
    """The file's SHA-256, as SHA256SUMS lists it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
