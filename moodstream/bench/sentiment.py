"""`moodstream bench sentiment --data DIR`: the whole serving verdict on any labelled folder of speech.

DIR holds `labels.tsv`: a header line, then `file<TAB>label3[<TAB>anything more]`, `file` relative to DIR (wav, flac,
g722, gsm or any PyAV-readable audio, any rate), `label3` one of negative / neutral / positive. Each clip runs the
serving path (`pipeline.ServingPath`: VAD trim, voice on the whole utterance and its 500 ms windows, ASR, text,
fusion). For each of `acoustic` (the voice as fusion forms it), `text` and `fused`, and the voice's two parts alone
(`acoustic_cnn`, `acoustic_encoder`: "neutral" throughout without a voice head): UAR over the classes present,
accuracy, macro and weighted F1, recall, prediction shares and the confusion (rows true negative/neutral/positive).
Progress goes to stderr. With `--clips FILE`, one TSV row per clip says what each stage called it, so a set's misses
can be listened to.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from models.acoustic.corpus import read_audio, read_labels
from models.metrics import LABELS3, three_way_report
from moodstream.bench import report, unusable
from moodstream.bench.pipeline import ClipVerdict, ServingPath, label_of


class MissingData(Exception):
    """The folder or its labels are not usable; the message says what to pass."""


def labelled_files(data: Path, limit: int) -> list[tuple[Path, str]]:
    if not (data / "labels.tsv").is_file():
        raise MissingData(f"{data}/labels.tsv not found: give a folder with labels.tsv (file<TAB>label3 …)")
    rows = read_labels(data)
    bad = sorted({r["label3"] for r in rows} - set(LABELS3))
    if bad:
        raise MissingData(f"{data}/labels.tsv: label3 must be negative, neutral or positive, not {', '.join(bad)}")
    files = [(data / r["file"], r["label3"]) for r in rows][: limit or None]
    missing = [str(path) for path, _ in files if not path.is_file()]
    if missing:
        raise MissingData(f"{len(missing)} files listed in labels.tsv are missing, e.g. {missing[0]}")
    if not files:
        raise MissingData(f"{data}/labels.tsv lists no files")
    return files


VERDICTS = ("acoustic", "text", "fused", "acoustic_cnn", "acoustic_encoder")
CLIP_COLUMNS = ("file", "label3", "acoustic", "text", "fused", "fused_score", "voice_commitment", "transcript")


def clip_row(data: Path, file: Path, label: str, verdict: ClipVerdict) -> dict[str, str]:
    """One clip's line of the `--clips` TSV; `text` is "-" when ASR gave no usable text."""
    fused = verdict.fused
    return {"file": str(file.relative_to(data)) if file.is_relative_to(data) else str(file), "label3": label,
            "acoustic": label_of(verdict.audio), "text": label_of(verdict.text) if verdict.text else "-",
            "fused": fused.label, "fused_score": f"{fused.score:+.3f}",
            "voice_commitment": f"{fused.voice_commitment:.2f}",
            "transcript": " ".join(verdict.transcript.split())}  # fmt: skip


def run(data: Path, limit: int, clips: Path | None = None) -> dict:
    files = labelled_files(data, limit)
    path = ServingPath()
    truth: list[str] = []
    predicted: dict[str, list[str]] = {name: [] for name in VERDICTS}
    no_text = 0
    rows: list[dict[str, str]] = []
    for n, (file, label) in enumerate(files, 1):
        verdict = path.run(read_audio(file))
        rows.append(clip_row(data, file, label, verdict))
        truth.append(label)
        predicted["acoustic"].append(label_of(verdict.audio))
        predicted["text"].append(label_of(verdict.text))
        predicted["fused"].append(verdict.fused.label)
        predicted["acoustic_cnn"].append(label_of(verdict.cnn))
        predicted["acoustic_encoder"].append(label_of(verdict.encoder))
        no_text += verdict.text is None
        if n % 25 == 0 or n == len(files):
            print(f"{n}/{len(files)} clips", file=sys.stderr, flush=True)
    result: dict = {"benchmark": "sentiment", "data": str(data), "files": len(files), "no_text": no_text,
                    "models": {"acoustic": path.acoustic.version, "text": path.text.version}}  # fmt: skip
    for name, labels in predicted.items():
        result[name] = three_way_report(truth, labels)
    if clips is not None:
        write_clips(clips, rows)
    return result


def write_clips(clips: Path, rows: list[dict[str, str]]) -> None:
    with clips.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CLIP_COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writeheader()
        writer.writerows(rows)


def main(data: Path, limit: int, as_json: bool, clips: Path | None = None) -> None:
    try:
        result = run(data, limit, clips)
    except MissingData as exc:
        unusable("sentiment", str(exc))
    report(result, as_json)
