"""Every clip the voice head learns from or is judged on, as one table: its corpus, speaker, labels and the features the
serving path computes (Whisper's pooled encoder states, as the transcriber pools them, and `processors.prosody`).

Corpora (each a leave-one-corpus-out unit in `train_voice_head.py`):
- `ravdess`: RAVDESS actors 01–20, acted English (8 emotions; 4-way and arousal where they map);
- `turev`, `baved`, or any folder with the shared `labels.tsv` columns (file, label3, emotion, arousal, speaker):
  TurEV-DB (Turkish acted words) and BAVED (Arabic words rated by arousal);
- `calm`: calm speech of many voices (neutral);
- `prompts-<voice>`: professional telephone prompts of one voice (neutral), one corpus each.
Each clip also gets `--channel-copies` channel-augmented versions (codecs, band, reverberation, noise: the
`augment.channel` chain), tagged by `copy`. Training only::

    python -m moodstream.models.acoustic.voice_table --out build/voice-table.npz --ravdess ../shared/data/ravdess \\
        --labelled ../shared/data/emotion/turev ../shared/data/emotion/baved ../shared/data/calm_speech \\
        --prompts /usr/share/asterisk/sounds/{en_US_f_Allison,fr_CA_f_June,it_IT_m_Carlo,ru_RU_f_IvrvoiceRU,fr,es}
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.models.acoustic.augment import channel
from moodstream.models.acoustic.corpus import AUDIO_SUFFIXES, SENTIMENT_OF, ravdess_name, read_audio, read_labels, trim
from moodstream.processors.prosody import prosody

EMOTION4_OF = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry"}
"""RAVDESS emotions in the four-way set; fearful, disgust and surprised have no four-way label."""
AROUSAL_OF = {"neutral": "neutral", "calm": "low", "sad": "low", "happy": "high", "angry": "high",
              "fearful": "high", "surprised": "high"}  # fmt: skip
"""RAVDESS emotions' arousal; disgust has none (acted both ways)."""


@dataclass(frozen=True)
class Row:
    path: str
    corpus: str
    speaker: str
    label3: str
    """negative / neutral / positive, or "" (no polarity: BAVED's low and high)."""
    emotion: str
    """angry / happy / sad / neutral, or ""."""
    arousal: str
    """low / neutral / high, or ""."""


def ravdess_rows(root: Path) -> list[Row]:
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".flac", ".wav")):
        named = ravdess_name(path)
        if named:
            emotion, actor = named
            rows.append(Row(str(path), "ravdess", f"ravdess-{actor:02d}", SENTIMENT_OF[emotion],
                            EMOTION4_OF.get(emotion, ""), AROUSAL_OF.get(emotion, "")))  # fmt: skip
    return rows


def labelled_rows(folder: Path) -> list[Row]:
    """A folder with labels.tsv; a missing emotion or arousal column of a neutral clip reads as neutral."""
    rows = []
    for i, r in enumerate(read_labels(folder)):
        neutral = r["label3"] == "neutral"
        emotion = r.get("emotion") or ("neutral" if neutral else "")
        arousal = r.get("arousal") or ("neutral" if neutral else "")
        speaker = r.get("speaker") or f"{folder.name}-{i}"
        rows.append(Row(str(folder / r["file"]), folder.name, speaker, r["label3"], emotion, arousal))
    return rows


def prompt_rows(folder: Path, limit: int, min_s: float = 0.3) -> list[Row]:
    """Up to `limit` prompts of the voice (every one for 0), in name order, spans under `min_s` left out. Single words
    stay in: the emotional corpora are single words too, and a head that met no calm ones learns "short = emotional"."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    name = f"prompts-{folder.name}"
    rows = [Row(str(p), name, name, "neutral", "neutral", "neutral") for p in files if _seconds(p) >= min_s]
    return rows[: limit or None]


def _seconds(path: Path) -> float:
    return len(read_audio(path)) / 16000


_transcriber = None


def _start() -> None:
    global _transcriber
    from moodstream.processors.transcriber import Transcriber, TranscriberOptions

    _transcriber = Transcriber(TranscriberOptions(cpu_threads=1, voice_head=False))


def _version(path: str, copy: int, seed: int) -> np.ndarray:
    """One clip's audio: clean (`copy` 0) or through the channel chain that `seed` draws."""
    audio = trim(read_audio(Path(path)))
    if copy:
        audio = np.clip(channel(audio, np.random.default_rng(seed)), -1, 1).astype(np.float32)
    return audio


def _features(job: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Encoder states pooled and prosody of one clip's version."""
    assert _transcriber is not None
    audio = _version(*job)
    return _transcriber.voice_features(audio), prosody(audio), len(audio) / 16000


def _prosody_only(job: tuple[str, int, int]) -> np.ndarray:
    return prosody(_version(*job))


def refresh_prosody(table: dict[str, np.ndarray], processes: int) -> dict[str, np.ndarray]:
    """The table with its prosody computed again (the same channel draws): after a change to `processors.prosody`,
    without the encoder's minutes."""
    jobs = [
        (str(path), int(copy), int(seed))
        for path, copy, seed in zip(table["path"], table["copy"], table["seed"], strict=True)
    ]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return table | {"prosody": np.stack(pool.map(_prosody_only, jobs, chunksize=32)).astype(np.float32)}


def build(rows: list[Row], copies: int, processes: int) -> dict[str, np.ndarray]:
    jobs = [(r.path, c, i * 10 + c) for i, r in enumerate(rows) for c in range(copies + 1)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes, initializer=_start) as pool:
        results = []
        for n, result in enumerate(pool.imap(_features, jobs, chunksize=8), 1):
            results.append(result)
            if n % 500 == 0:
                print(json.dumps({"clips": n, "of": len(jobs), "s": round(time.perf_counter() - started)}), flush=True)
    repeat = copies + 1
    table = {
        field: np.repeat(np.array([getattr(r, field) for r in rows]), repeat) for field in Row.__dataclass_fields__
    }
    return table | {
        "copy": np.tile(np.arange(repeat), len(rows)),
        "seed": np.array([seed for _, _, seed in jobs]),
        "encoder": np.stack([r[0] for r in results]).astype(np.float32),
        "prosody": np.stack([r[1] for r in results]).astype(np.float32),
        "seconds": np.array([r[2] for r in results], dtype=np.float32),
    }


WINDOW = 8000
"""Samples in the 500 ms windows the acoustic stage scores while the user speaks."""


def _window_prosody(path: str) -> np.ndarray:
    audio = trim(read_audio(Path(path)))
    starts = range(0, max(1, len(audio) - WINDOW + 1), WINDOW)
    return np.stack([prosody(audio[start : start + WINDOW]) for start in starts])


def build_windows(rows: list[Row], processes: int) -> dict[str, np.ndarray]:
    """`moodstream.processors.prosody` of every 500 ms window of each clean clip, with the clip's labels."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        per_clip = pool.map(_window_prosody, [r.path for r in rows], chunksize=16)
    counts = [len(windows) for windows in per_clip]
    table = {
        field: np.repeat(np.array([getattr(r, field) for r in rows]), counts) for field in Row.__dataclass_fields__
    }
    return table | {"copy": np.zeros(sum(counts), dtype=int), "prosody": np.concatenate(per_clip).astype(np.float32)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ravdess", default="")
    parser.add_argument("--labelled", nargs="*", default=[], help="folders with labels.tsv (one corpus each)")
    parser.add_argument("--prompts", nargs="*", default=[], help="folders of one prompt voice each")
    parser.add_argument("--prompt-limit", type=int, default=300, help="prompts per voice (0: all)")
    parser.add_argument("--channel-copies", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--windows", action="store_true", help="prosody of 500 ms windows instead (clean clips)")
    parser.add_argument("--refresh", default="", help="recompute only the prosody of this table (written to --out)")
    args = parser.parse_args(argv)
    if args.refresh:
        with np.load(args.refresh) as data:
            table = refresh_prosody({name: data[name] for name in data.files}, args.processes)
        np.savez_compressed(args.out, **table)
        print(json.dumps({"rows": len(table["copy"]), "out": args.out}))
        return
    rows = ravdess_rows(Path(args.ravdess)) if args.ravdess else []
    rows += [row for folder in args.labelled for row in labelled_rows(Path(folder))]
    rows += [row for folder in args.prompts for row in prompt_rows(Path(folder), args.prompt_limit)]
    table = build_windows(rows, args.processes) if args.windows else build(rows, args.channel_copies, args.processes)
    np.savez_compressed(args.out, **table)
    print(json.dumps({"rows": len(table["copy"]), "out": args.out}))


if __name__ == "__main__":
    main()
