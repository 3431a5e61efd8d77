"""Speech clips with a three-way label and a speaker, from every source the voice model trains or is judged on.

A `Clip` is float32 16 kHz mono audio with its label (negative / neutral / positive), its speaker and its source,
so splits can be made by speaker and reports by source. Sources:
- RAVDESS (acted emotion, 20 actors): `ravdess`;
- any folder with `labels.tsv` (a header, then `file<TAB>label3[<TAB>…]`, an optional `speaker` column):
  `labelled_folder` (the calm speech of 110 voices, or any set a user brings);
- a folder of telephone prompts of one professional speaker (Asterisk sound packages): `prompt_voice`;
- synthetic voices, espeak-ng with its accents and variants: `espeak_voices`.
Training-only helpers (numpy, soundfile, PyAV); `moodstream bench sentiment` reads labelled folders the same way.
"""

from __future__ import annotations

import csv
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.producers.audio import load_pcm16

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SENTIMENT_OF = {"neutral": "neutral", "calm": "neutral", "happy": "positive", "surprised": "positive",
                "sad": "negative", "angry": "negative", "fearful": "negative", "disgust": "negative"}  # fmt: skip
AUDIO_SUFFIXES = (".wav", ".flac", ".g722", ".gsm", ".mp3", ".ogg", ".opus", ".m4a", ".ul", ".al")


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray
    label: str
    """negative, neutral or positive."""
    speaker: str
    source: str
    emotion: str = ""
    """The RAVDESS emotion where there is one (the auxiliary 8-way target)."""


def read_audio(path: Path) -> np.ndarray:
    """Any PyAV-readable file at any rate → float32 16 kHz mono."""
    return np.frombuffer(load_pcm16(path), dtype="<i2").astype(np.float32) / 32768.0


def trim(audio: np.ndarray, floor_db: float = -40.0, keep_s: float = 0.1) -> np.ndarray:
    """Drop leading and trailing silence (40 dB below the loudest 10 ms), as the endpointer would."""
    frames = len(audio) // 160
    if frames == 0:
        return audio
    rms = np.sqrt((audio[: frames * 160].reshape(frames, 160) ** 2).mean(axis=1)) + 1e-9
    loud = np.flatnonzero(20 * np.log10(rms / max(rms.max(), 1e-9)) > floor_db)
    if not len(loud):
        return audio
    pad = int(keep_s * 16000)
    return audio[max(0, loud[0] * 160 - pad) : min(len(audio), (loud[-1] + 1) * 160 + pad)]


def ravdess_name(path: Path) -> tuple[str, int] | None:
    """(emotion, actor) from a RAVDESS name 03-01-EE-II-SS-RR-NN, or None for another name."""
    parts = path.stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() for p in parts):
        return None
    return EMOTIONS[int(parts[2]) - 1], int(parts[6])


def ravdess(root: Path, actors: Iterable[int] | None = None) -> list[Clip]:
    wanted = set(actors) if actors is not None else None
    clips = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".flac", ".wav")):
        named = ravdess_name(path)
        if named and (wanted is None or named[1] in wanted):
            emotion, actor = named
            speaker = f"ravdess-{actor:02d}"
            clips.append(Clip(trim(read_audio(path)), SENTIMENT_OF[emotion], speaker, "ravdess", emotion))
    return clips


def read_labels(folder: Path) -> list[dict[str, str]]:
    """Rows of `labels.tsv` (header line; `file` and `label3` required; no quoting)."""
    with (folder / "labels.tsv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows and not {"file", "label3"} <= set(rows[0]):
        raise ValueError(f"{folder / 'labels.tsv'}: needs the columns file and label3")
    return rows


def labelled_folder(folder: Path, source: str | None = None) -> list[Clip]:
    source = source or folder.name
    return [
        Clip(trim(read_audio(folder / row["file"])), row["label3"], row.get("speaker") or f"{source}-{i}", source)
        for i, row in enumerate(read_labels(folder))
    ]


def prompt_voice(folder: Path, speaker: str, min_s: float = 0.8, limit: int = 0) -> list[Clip]:
    """Every prompt of one speaker's folder (any depth), neutral; very short prompts (single digits) skipped."""
    clips = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        audio = trim(read_audio(path))
        if len(audio) >= min_s * 16000:
            clips.append(Clip(audio, "neutral", speaker, f"prompts-{speaker}"))
        if limit and len(clips) >= limit:
            break
    return clips


ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2")


def espeak_voices(texts: list[str], rng: np.random.Generator) -> list[Clip]:
    """Each text spoken by espeak-ng in a random accent, variant, pitch and rate; neutral (flat synthetic prosody).
    The speaker is accent+variant, so splits by speaker keep a synthetic voice on one side."""
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        for text in texts:
            accent, variant = rng.choice(ESPEAK_ACCENTS), rng.choice(ESPEAK_VARIANTS)
            pitch, rate = int(rng.integers(25, 75)), int(rng.integers(130, 200))
            command = ["espeak-ng", "-v", f"{accent}+{variant}", "-p", str(pitch), "-s", str(rate), "-w", str(wav)]
            subprocess.run([*command, text], check=True, capture_output=True)
            clips.append(Clip(trim(read_audio(wav)), "neutral", f"espeak-{accent}+{variant}", "espeak"))
    return clips
