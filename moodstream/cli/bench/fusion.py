"""`moodstream bench fusion`: does fusion keep what each modality knows?

(a) RAVDESS actors held out from acoustic training say two lexically neutral sentences with acted emotion: fused UAR
    should stay within 1 point of acoustic-only UAR (the words carry no sentiment, so they must not move the result).
(b) SST-2 dev sentences spoken by espeak-ng (flat prosody): fused accuracy should stay within 2 points of text-only
    accuracy (the voice carries no sentiment).
Both run the serving cores in process on each clip (`pipeline.ServingPath`): VAD trim, acoustic scores for the whole
clip and its 500 ms windows, Whisper, the text model on the transcript, the fuser.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from moodstream.cli.bench import report, require_tool
from moodstream.cli.bench.acoustic import chosen_actors, ravdess_files
from moodstream.cli.bench.pipeline import ServingPath, label_of
from moodstream.models.acoustic.corpus import SENTIMENT_OF, read_audio
from moodstream.models.datasets import read_sst2
from moodstream.models.metrics import three_way_report


def ravdess_check(path: ServingPath, root: Path, actors: list[int] | None) -> dict:
    truth, acoustic, fused, weights = [], [], [], []
    for file, emotion, _actor in ravdess_files(root, actors):
        verdict = path.run(read_audio(file))
        truth.append(SENTIMENT_OF[emotion])
        acoustic.append(label_of(verdict.audio))
        fused.append(verdict.fused.label)
        weights.append(verdict.fused.text_weight)
    a, f = three_way_report(truth, acoustic), three_way_report(truth, fused)
    return {"files": len(truth), "acoustic_uar": a["uar"], "fused_uar": f["uar"], "acoustic_accuracy": a["accuracy"],
            "fused_accuracy_ravdess": f["accuracy"], "ravdess_mean_text_weight": round(float(np.mean(weights)), 4),
            "fused_confusion_ravdess": f["confusion"]}  # fmt: skip


def sst2_check(path: ServingPath, tsv: Path, limit: int) -> dict:
    sentences, labels = read_sst2(tsv)
    if limit:
        sentences, labels = sentences[:limit], labels[:limit]
    text_ok = fused_ok = gold_ok = rejected = 0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        for sentence, gold in zip(sentences, labels, strict=True):
            subprocess.run(["espeak-ng", "-w", str(wav), sentence], check=True, capture_output=True)
            verdict = path.run(read_audio(wav))
            positive = bool(gold)
            text = verdict.text
            rejected += text is None
            text_ok += (text is not None and text["positive"] >= text["negative"]) == positive
            fused_ok += (verdict.fused.score >= 0) == positive
            gold_ok += (path.text.classify([sentence])[0].p_positive >= 0.5) == positive
    n = len(sentences)
    return {"sentences": n, "text_accuracy": round(text_ok / n, 4), "fused_accuracy": round(fused_ok / n, 4),
            "text_accuracy_on_written_sentences": round(gold_ok / n, 4), "asr_rejected": rejected}  # fmt: skip


def main(ravdess: Path | None, sst2: Path | None, actors: str, limit: int, as_json: bool) -> None:
    if sst2:
        require_tool("fusion", "espeak-ng", "espeak-ng")
    chosen = chosen_actors(actors)
    if ravdess:
        ravdess_files(ravdess, chosen)  # exits 2 with a clear line when there is nothing to score
    path = ServingPath()
    result: dict = {"benchmark": "fusion", "text_weight": path.fuser.options.text_weight}
    if ravdess:
        result |= ravdess_check(path, ravdess, chosen)
        print(f"ravdess done: {result}", file=sys.stderr, flush=True)
    if sst2:
        result |= sst2_check(path, sst2, limit)
    if "acoustic_uar" in result:
        result["uar_drop_points"] = round(100 * (result["acoustic_uar"] - result["fused_uar"]), 2)
    if "text_accuracy" in result:
        result["accuracy_drop_points"] = round(100 * (result["text_accuracy"] - result["fused_accuracy"]), 2)
    report(result, as_json)
