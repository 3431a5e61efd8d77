"""`moodstream bench fusion`: does fusion keep what each modality knows?

(a) RAVDESS actors held out from acoustic training say two lexically neutral sentences with acted emotion: fused UAR
    should stay within 1 point of acoustic-only UAR (the words carry no sentiment, so they must not move the result).
(b) SST-2 dev sentences spoken by espeak-ng (flat prosody): fused accuracy should stay within 2 points of text-only
    accuracy (the voice carries no sentiment).
Both run the serving cores in process on each clip: trim as the endpointer would, acoustic scores for the whole clip
and its 500 ms windows, Whisper, the text model on the transcript, the fuser.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from moodstream.bench import report
from moodstream.bench.acoustic import SENTIMENT_OF, held_out_actors, ravdess_files, uar_report
from moodstream.bench.text import read_tsv
from processors.acoustic import AcousticClassifier, AcousticOptions
from processors.fusion import Fuser
from processors.text_sentiment import TextClassifier, TextSentimentOptions
from processors.transcriber import Transcriber, TranscriberOptions
from producers.audio import load_pcm16


class Path3:
    """The serving cores, one thread each."""

    def __init__(self) -> None:
        self.acoustic = AcousticClassifier(AcousticOptions(threads=1))
        self.asr = Transcriber(TranscriberOptions(cpu_threads=1))
        self.text = TextClassifier(TextSentimentOptions(threads=1))
        self.fuser = Fuser()

    def run(self, audio: np.ndarray) -> dict:
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        whole = self.acoustic.classify(pcm).sentiment
        windows = [self.acoustic.classify(pcm[i : i + 8000]).sentiment for i in range(0, len(pcm) - 8000 + 1, 8000)]
        audio_dist = self.fuser.audio_distribution(whole, windows)
        transcript = self.asr.transcribe(pcm.tobytes())
        text = None
        if not transcript.rejected:
            scores = self.text.classify([transcript.text])[0]
            text = {"negative": scores.negative, "neutral": scores.neutral, "positive": scores.positive}
        fused = self.fuser.fuse(text, audio_dist, transcript.avg_logprob)
        return {"audio": audio_dist, "text": text, "fused": fused, "transcript": transcript.text}


def label(distribution: dict[str, float] | None) -> str:
    return max(distribution, key=distribution.__getitem__) if distribution else "neutral"


def ravdess_check(path3: Path3, root: Path) -> dict:
    import soundfile

    from models.acoustic.train_ravdess import trim

    truth, acoustic, fused, weights = [], [], [], []
    for file, emotion, _actor in ravdess_files(root, held_out_actors()):
        audio, _rate = soundfile.read(str(file), dtype="float32")
        out = path3.run(trim(audio))
        truth.append(SENTIMENT_OF[emotion])
        acoustic.append(label(out["audio"]))
        fused.append(out["fused"].label)
        weights.append(out["fused"].text_weight)
    a, f = uar_report(truth, acoustic), uar_report(truth, fused)
    return {"files": len(truth), "acoustic_uar": a["uar"], "fused_uar": f["uar"], "acoustic_accuracy": a["accuracy"],
            "fused_accuracy_ravdess": f["accuracy"], "ravdess_mean_text_weight": round(float(np.mean(weights)), 4),
            "fused_confusion_ravdess": f["confusion"]}  # fmt: skip


def sst2_check(path3: Path3, tsv: Path, limit: int) -> dict:
    from models.acoustic.train_ravdess import trim

    sentences, labels = read_tsv(tsv)
    if limit:
        sentences, labels = sentences[:limit], labels[:limit]
    text_ok = fused_ok = gold_ok = rejected = 0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        for sentence, gold in zip(sentences, labels, strict=True):
            subprocess.run(["espeak-ng", "-w", str(wav), sentence], check=True, capture_output=True)
            audio = np.frombuffer(load_pcm16(wav), dtype="<i2").astype(np.float32) / 32768
            out = path3.run(trim(audio))
            positive = bool(gold)
            text = out["text"]
            rejected += text is None
            text_ok += (text is not None and text["positive"] >= text["negative"]) == positive
            fused_ok += (out["fused"].score >= 0) == positive
            gold_ok += (path3.text.classify([sentence])[0].p_positive >= 0.5) == positive
    n = len(sentences)
    return {"sentences": n, "text_accuracy": round(text_ok / n, 4), "fused_accuracy": round(fused_ok / n, 4),
            "text_accuracy_on_written_sentences": round(gold_ok / n, 4), "asr_rejected": rejected}  # fmt: skip


def main(ravdess: Path | None, sst2: Path | None, limit: int, as_json: bool) -> None:
    path3 = Path3()
    result: dict = {"benchmark": "fusion", "text_weight": path3.fuser.options.text_weight}
    if ravdess:
        result |= ravdess_check(path3, ravdess)
        print(f"ravdess done: {result}", file=sys.stderr, flush=True)
    if sst2:
        result |= sst2_check(path3, sst2, limit)
    if "acoustic_uar" in result:
        result["uar_drop_points"] = round(100 * (result["acoustic_uar"] - result["fused_uar"]), 2)
    if "text_accuracy" in result:
        result["accuracy_drop_points"] = round(100 * (result["text_accuracy"] - result["fused_accuracy"]), 2)
    report(result, as_json)
