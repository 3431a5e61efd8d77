"""`moodstream bench sentiment --data DIR`: the whole serving verdict on any labelled folder of speech.

DIR holds `labels.tsv`: a header line, then `file<TAB>label3[<TAB>anything more]`, `file` relative to DIR (wav, flac,
g722, gsm or any PyAV-readable audio, any rate), `label3` one of negative / neutral / positive. Optional columns:
`emotion` (angry / happy / sad / neutral) and `arousal` (low / neutral / high); a row may leave `label3` empty when it
has an emotion or an arousal (BAVED's low and high words). Each clip runs the serving path (`pipeline.ServingPath`:
VAD trim, voice on the whole utterance and its 500 ms windows, ASR with the voice head, text, fusion), on its own, as
the product reads every utterance (the voice head keeps no session history: decision record 0009).

Over the clips with a label3, for each of `acoustic` (the voice alone as fusion reads it: its calm default and
arousal rule, the result an utterance without words gets), `text` and `fused`, and the voice's two parts before that
rule (`acoustic_cnn`, `acoustic_encoder`: the voice head's polarity, "neutral" throughout without one): UAR over the
classes present, accuracy, macro and weighted F1, recall, prediction shares and the confusion (rows true
negative/neutral/positive). With an emotion column, `emotion`: four-way UAR, recall and confusion (rows and columns
angry/happy/sad/neutral) of the fused result's emotion; with an arousal column, `arousal`: the AUC of the result's
arousal for high against low and neutral, and its mean per level. `voice_ms`: what the voice head adds to each ASR
call (pooling, prosody, heads; p50 and p95 over the clips, one thread). Progress goes to stderr. With `--clips FILE`,
one TSV row per clip says what each stage called it, so a set's misses can be listened to.
`--voice-head FILE` scores a voice head other than the shipped one (a leave-one-corpus-out fold's).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.cli.bench import report, unusable
from moodstream.cli.bench.pipeline import ClipVerdict, ServingPath, label_of
from moodstream.models.acoustic.corpus import read_audio, read_labels
from moodstream.models.metrics import LABELS3, auc, class_report, three_way_report
from moodstream.processors.voice_head import EMOTIONS

AROUSAL_LEVELS = ("low", "neutral", "high")


class MissingData(Exception):
    """The folder or its labels are not usable; the message says what to pass."""


@dataclass(frozen=True)
class LabelledClip:
    path: Path
    label3: str
    """negative / neutral / positive, or "" (no polarity)."""
    emotion: str = ""
    """angry / happy / sad / neutral, or ""."""
    arousal: str = ""
    """low / neutral / high, or ""."""


def _check(rows: list[dict[str, str]], column: str, allowed: tuple[str, ...], data: Path) -> None:
    bad = sorted({r.get(column) or "" for r in rows} - {*allowed, ""})
    if bad:
        raise MissingData(f"{data}/labels.tsv: {column} must be one of {', '.join(allowed)}, not {', '.join(bad)}")


def labelled_files(data: Path, limit: int) -> list[LabelledClip]:
    if not (data / "labels.tsv").is_file():
        raise MissingData(f"{data}/labels.tsv not found: give a folder with labels.tsv (file<TAB>label3 …)")
    rows = read_labels(data)
    for column, allowed in (("label3", LABELS3), ("emotion", EMOTIONS), ("arousal", AROUSAL_LEVELS)):
        _check(rows, column, allowed, data)
    unlabelled = [r["file"] for r in rows if not (r["label3"] or r.get("emotion") or r.get("arousal"))]
    if unlabelled:
        raise MissingData(f"{data}/labels.tsv: {unlabelled[0]} has no label3, emotion or arousal")
    files = [LabelledClip(data / r["file"], r["label3"], r.get("emotion") or "", r.get("arousal") or "")
             for r in rows][: limit or None]  # fmt: skip
    missing = [str(clip.path) for clip in files if not clip.path.is_file()]
    if missing:
        raise MissingData(f"{len(missing)} files listed in labels.tsv are missing, e.g. {missing[0]}")
    if not files:
        raise MissingData(f"{data}/labels.tsv lists no files")
    return files


VERDICTS = ("acoustic", "text", "fused", "acoustic_cnn", "acoustic_encoder")
CLIP_COLUMNS = ("file", "label3", "emotion", "arousal", "acoustic", "text", "fused", "fused_score",
                "voice_commitment", "result_emotion", "result_arousal", "transcript")  # fmt: skip


def clip_row(data: Path, clip: LabelledClip, verdict: ClipVerdict) -> dict[str, str]:
    """One clip's line of the `--clips` TSV; `text` is "-" when ASR gave no usable text, the result's emotion and
    arousal "-" without a voice head."""
    fused = verdict.fused
    emotion = label_of(verdict.emotion) if verdict.emotion else "-"
    return {"file": str(clip.path.relative_to(data)) if clip.path.is_relative_to(data) else str(clip.path),
            "label3": clip.label3, "emotion": clip.emotion, "arousal": clip.arousal,
            "acoustic": verdict.voice_label, "text": label_of(verdict.text) if verdict.text else "-",
            "fused": fused.label, "fused_score": f"{fused.score:+.3f}",
            "voice_commitment": f"{fused.voice_commitment:.2f}", "result_emotion": emotion,
            "result_arousal": f"{verdict.arousal:.3f}" if verdict.arousal is not None else "-",
            "transcript": " ".join(verdict.transcript.split())}  # fmt: skip


def arousal_report(scores: list[float], levels: list[str]) -> dict:
    mean = {level: round(float(np.mean([s for s, lv in zip(scores, levels, strict=True) if lv == level])), 4)
            for level in AROUSAL_LEVELS if level in levels}  # fmt: skip
    found = auc(scores, [level == "high" for level in levels])
    return {"clips": len(levels), "auc": None if found is None else round(found, 4), "mean": mean}


def scored(files: list[LabelledClip], path: ServingPath) -> list[ClipVerdict]:
    verdicts = []
    for n, clip in enumerate(files, 1):
        verdicts.append(path.run(read_audio(clip.path)))
        if n % 25 == 0 or n == len(files):
            print(f"{n}/{len(files)} clips", file=sys.stderr, flush=True)
    return verdicts


def verdict_report(files: list[LabelledClip], verdicts: list[ClipVerdict]) -> dict:
    """Every figure of one way of feeding the clips: the three-way verdicts, emotion and arousal where labelled."""
    polar = [(clip, v) for clip, v in zip(files, verdicts, strict=True) if clip.label3]
    truth = [clip.label3 for clip, _ in polar]
    labels = {"acoustic": [v.voice_label for _, v in polar], "text": [label_of(v.text) for _, v in polar],
              "fused": [v.fused.label for _, v in polar], "acoustic_cnn": [label_of(v.cnn) for _, v in polar],
              "acoustic_encoder": [label_of(v.encoder) for _, v in polar]}  # fmt: skip
    result: dict = {name: three_way_report(truth, labels[name]) for name in VERDICTS}
    with_emotion = [(clip, v) for clip, v in zip(files, verdicts, strict=True) if clip.emotion]
    if with_emotion:
        truth = [c.emotion for c, _ in with_emotion]
        result["emotion"] = class_report(truth, [label_of(v.emotion) for _, v in with_emotion], EMOTIONS)
    rated = [(clip, v) for clip, v in zip(files, verdicts, strict=True) if clip.arousal and v.arousal is not None]
    if rated:
        result["arousal"] = arousal_report([v.arousal for _, v in rated], [c.arousal for c, _ in rated])
    return result


def run(data: Path, limit: int, clips: Path | None = None, voice_head: Path | None = None) -> dict:
    files = labelled_files(data, limit)
    if voice_head is not None and not voice_head.is_file():
        raise MissingData(f"{voice_head} not found: give a voice_head.json (models/acoustic/train_voice_head.py)")
    path = ServingPath(voice_head)
    verdicts = scored(files, path)
    head = path.asr.voice_head
    result: dict = {"benchmark": "sentiment", "data": str(data), "files": len(files),
                    "no_text": sum(v.text is None for v in verdicts),
                    "models": {"acoustic": path.acoustic.version, "text": path.text.version,
                               "voice_head": head.version if head else None}}  # fmt: skip
    result |= verdict_report(files, verdicts)
    if head is not None:
        costs = [v.voice_ms for v in verdicts]
        result["voice_ms"] = {"p50": round(float(np.percentile(costs, 50)), 3),
                              "p95": round(float(np.percentile(costs, 95)), 3)}  # fmt: skip
    if clips is not None:
        write_clips(clips, [clip_row(data, clip, v) for clip, v in zip(files, verdicts, strict=True)])
    return result


def write_clips(clips: Path, rows: list[dict[str, str]]) -> None:
    with clips.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CLIP_COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writeheader()
        writer.writerows(rows)


def main(data: Path, limit: int, as_json: bool, clips: Path | None = None, voice_head: Path | None = None) -> None:
    try:
        result = run(data, limit, clips, voice_head)
    except MissingData as exc:
        unusable("sentiment", str(exc))
    report(result, as_json)
