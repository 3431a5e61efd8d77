"""Train the acoustic emotion model on RAVDESS (actors 01–20), split by actor, and export it to ONNX.

Training-only (needs the ``train`` extra)::

    python -m moodstream.models.acoustic.train_ravdess --ravdess ../shared/data/ravdess --out models/acoustic

The exported graph takes raw 16 kHz PCM (float, [batch, samples]) and contains the MFCC (models/acoustic/features.py),
so serving and training share one feature implementation. Outputs: ``sentiment`` (3-way probabilities: negative,
neutral, positive), ``emotion`` (8-way RAVDESS probabilities) and ``mfcc`` (the features, for the parity test).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from moodstream.models.acoustic.corpus import trim

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SENTIMENTS = ("negative", "neutral", "positive")
EMOTION_TO_SENTIMENT = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "positive",
    "surprised": "positive",
    "sad": "negative",
    "angry": "negative",
    "fearful": "negative",
    "disgust": "negative",
}
MODEL_FILE = "model.onnx"


@dataclass
class TrainOptions:
    """One training run; saved beside the model."""

    test_actors: tuple[int, ...] = (17, 18, 19, 20)
    """Held out for the reported figures (2 male, 2 female); never seen in training."""
    epochs: int = 60
    """Passes over the training actors."""
    batch_size: int = 32
    """Crops per step."""
    crop_s: tuple[float, float] = (0.5, 2.5)
    """Random crop length range (serving scores 0.5 s windows and whole utterances)."""
    learning_rate: float = 2e-3
    """AdamW peak learning rate (cosine decay)."""
    weight_decay: float = 1e-3
    """AdamW weight decay."""
    emotion_loss_weight: float = 0.5
    """Weight of the auxiliary 8-way loss next to the 3-way one."""
    seed: int = 3
    """Seed of everything random."""
    threads: int = 2
    """torch threads."""


def parse_name(path: Path) -> tuple[str, int]:
    """(emotion, actor) from a RAVDESS name 03-01-EE-II-SS-RR-NN."""
    parts = path.stem.split("-")
    return EMOTIONS[int(parts[2]) - 1], int(parts[6])


def load_corpus(root: Path) -> list[tuple[np.ndarray, str, int]]:
    import soundfile

    items = []
    for path in sorted(root.rglob("*.flac")) + sorted(root.rglob("*.wav")):
        audio, rate = soundfile.read(str(path), dtype="float32")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        if rate != 16000:
            raise ValueError(f"{path}: expected 16 kHz, got {rate}")
        emotion, actor = parse_name(path)
        items.append((trim(audio), emotion, actor))
    return items


def build_model(channels: tuple[int, int, int] = (64, 128, 128)):
    import torch

    from moodstream.models.acoustic.features import MFCC, N_MFCC

    class EmotionCNN(torch.nn.Module):
        """MFCC → Conv1d 64 → max-pool → Conv1d 128 → Conv1d 128 → global mean+max pool → dense heads."""

        def __init__(self) -> None:
            super().__init__()
            self.mfcc = MFCC()
            self.norm = torch.nn.InstanceNorm1d(N_MFCC)  # per-window CMVN: gain and channel invariant
            a, b, c = channels
            self.body = torch.nn.Sequential(
                torch.nn.Conv1d(N_MFCC, a, 5, padding=2),
                torch.nn.BatchNorm1d(a),
                torch.nn.ReLU(),
                torch.nn.MaxPool1d(2),
                torch.nn.Conv1d(a, b, 5, padding=2),
                torch.nn.BatchNorm1d(b),
                torch.nn.ReLU(),
                torch.nn.Conv1d(b, c, 3, padding=1),
                torch.nn.BatchNorm1d(c),
                torch.nn.ReLU(),
            )
            self.dropout = torch.nn.Dropout(0.3)
            self.sentiment_head = torch.nn.Linear(2 * c, len(SENTIMENTS))
            self.emotion_head = torch.nn.Linear(2 * c, len(EMOTIONS))

        def forward(self, audio: torch.Tensor):
            features = self.mfcc(audio)
            hidden = self.body(self.norm(features))
            pooled = self.dropout(torch.cat([hidden.mean(dim=2), hidden.amax(dim=2)], dim=1))
            return self.sentiment_head(pooled), self.emotion_head(pooled), features

    return EmotionCNN()


def augment(audio: np.ndarray, rng: np.random.Generator, crop: int) -> np.ndarray:
    speed = rng.uniform(0.9, 1.1)  # speed and pitch together, by resampling
    positions = np.arange(0, len(audio) - 1, speed)
    audio = np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
    if len(audio) > crop:
        start = rng.integers(0, len(audio) - crop)
        audio = audio[start : start + crop]
    else:
        audio = np.pad(audio, (0, crop - len(audio)), mode="wrap")
    audio = audio * 10 ** (rng.uniform(-12, 6) / 20)
    snr_db = rng.uniform(10, 40)
    power = float(np.mean(audio**2)) + 1e-10
    audio = audio + rng.standard_normal(len(audio)).astype(np.float32) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(audio, -1, 1).astype(np.float32)


def evaluate(predict, items) -> dict:
    truth = np.array([SENTIMENTS.index(EMOTION_TO_SENTIMENT[e]) for _, e, _ in items])
    emotion_truth = np.array([EMOTIONS.index(e) for _, e, _ in items])
    probs3, probs8 = zip(*(predict(audio) for audio, _, _ in items), strict=True)
    pred = np.argmax(np.stack(probs3), axis=1)
    pred8 = np.argmax(np.stack(probs8), axis=1)
    confusion = np.zeros((3, 3), dtype=int)
    for t, p in zip(truth, pred, strict=True):
        confusion[t, p] += 1
    recalls = confusion.diagonal() / confusion.sum(axis=1)
    return {
        "uar": round(float(recalls.mean()), 4),
        "accuracy": round(float((pred == truth).mean()), 4),
        "recall": dict(zip(SENTIMENTS, [round(float(r), 4) for r in recalls], strict=True)),
        "confusion": confusion.tolist(),
        "emotion_accuracy_8way": round(float((pred8 == emotion_truth).mean()), 4),
    }


def train(args: argparse.Namespace) -> None:
    import torch

    opts = TrainOptions(epochs=args.epochs, threads=args.threads)
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    rng = np.random.default_rng(opts.seed)
    corpus = load_corpus(Path(args.ravdess))
    train_items = [c for c in corpus if c[2] not in opts.test_actors]
    test_items = [c for c in corpus if c[2] in opts.test_actors]
    targets3 = np.array([SENTIMENTS.index(EMOTION_TO_SENTIMENT[e]) for _, e, _ in train_items])
    targets8 = np.array([EMOTIONS.index(e) for _, e, _ in train_items])
    counts = np.bincount(targets3, minlength=3)
    class_weights = torch.tensor(len(targets3) / (3 * counts), dtype=torch.float32)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.learning_rate, weight_decay=opts.weight_decay)
    steps_per_epoch = len(train_items) // opts.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=opts.learning_rate, total_steps=opts.epochs * steps_per_epoch
    )
    started = time.time()
    for epoch in range(opts.epochs):
        model.train()
        order = rng.permutation(len(train_items))
        losses = []
        for step in range(steps_per_epoch):
            rows = order[step * opts.batch_size : (step + 1) * opts.batch_size]
            crop = int(rng.uniform(*opts.crop_s) * 16000)
            batch = torch.from_numpy(np.stack([augment(train_items[i][0], rng, crop) for i in rows]))
            logits3, logits8, _ = model(batch)
            loss = torch.nn.functional.cross_entropy(logits3, torch.from_numpy(targets3[rows]), weight=class_weights)
            loss = loss + opts.emotion_loss_weight * torch.nn.functional.cross_entropy(
                logits8, torch.from_numpy(targets8[rows])
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        if (epoch + 1) % 10 == 0:
            print(json.dumps({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                              "seconds": round(time.time() - started)}), flush=True)  # fmt: skip

    model.eval()
    out = Path(args.out)
    export(model, out / MODEL_FILE)
    predict = onnx_predictor(out / MODEL_FILE)
    report = {
        "held_out_actors": list(opts.test_actors),
        "test_files": len(test_items),
        "train_files": len(train_items),
        "whole_utterance": evaluate(predict, test_items),
        "train": asdict(opts) | {"seconds": round(time.time() - started, 1)},
    }
    windows = [(a[i : i + 8000], e, s) for a, e, s in test_items for i in range(0, len(a) - 8000 + 1, 8000)]
    report["window_500ms"] = evaluate(predict, windows)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    digest = hashlib.sha256((out / MODEL_FILE).read_bytes()).hexdigest()
    (out / "SHA256SUMS").write_text(f"{digest}  {MODEL_FILE}\n")
    print(json.dumps(report))


def export(model, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((1, 16000))

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, audio: torch.Tensor):
            logits3, logits8, features = self.inner(audio)
            return torch.softmax(logits3, dim=1), torch.softmax(logits8, dim=1), features

    torch.onnx.export(
        Exported().eval(),
        (example,),
        str(path),
        input_names=["audio"],
        output_names=["sentiment", "emotion", "mfcc"],
        dynamic_axes={
            "audio": {0: "batch", 1: "samples"},
            "sentiment": {0: "batch"},
            "emotion": {0: "batch"},
            "mfcc": {0: "batch", 2: "frames"},
        },
        opset_version=17,
        dynamo=False,
    )
    import onnx

    graph = onnx.load(str(path))
    for key, value in {"sentiments": ",".join(SENTIMENTS), "emotions": ",".join(EMOTIONS)}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


def onnx_predictor(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def predict(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sentiment, emotion, _ = session.run(None, {"audio": audio[None, :].astype(np.float32)})
        return sentiment[0], emotion[0]

    return predict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ravdess", required=True, help="RAVDESS root (Actor_NN folders, any depth)")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--epochs", type=int, default=TrainOptions.epochs)
    parser.add_argument("--threads", type=int, default=TrainOptions.threads)
    train(parser.parse_args(argv))


if __name__ == "__main__":
    random.seed(0)
    main()
