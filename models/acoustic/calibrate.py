"""Fit the voice model's valence shift on RAVDESS actors that a cross-validation fold left out, and bake it into a
model's graph.

Acted "happy" and "surprised" share their arousal with "angry" and "fearful", and the voice model splits that
arousal towards negative: positive is its weakest class. The shift moves probability between negative and positive
only: p(positive)/p(negative) is multiplied by e^shift and their sum, p(neutral) and so the fusion stage's voice
commitment stay as they were. So it changes which pole an emotional voice is called, never whether a calm voice is
called calm.

The shift is fitted without touching the evaluation actors: each fold model (``train_voice.py --exclude-actors``)
scores the training actors it did not see, through the serving path (VAD trim, the whole utterance and its 500 ms
windows pooled as fusion pools them, the voice commitment), and the shift that maximises the three-way UAR of those
out-of-fold verdicts is taken. Training-only (the ``train`` extra)::

    python -m moodstream.models.acoustic.calibrate --ravdess ../shared/data/ravdess build/cv/fold{1,2,3,4} \\
        --apply build/voice-ens/model.onnx --out models/acoustic
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from moodstream.models.acoustic.corpus import Clip, ravdess
from moodstream.models.acoustic.train_ravdess import SENTIMENTS
from moodstream.models.metrics import three_way_report

if TYPE_CHECKING:
    from onnx import ModelProto

MODEL_FILE = "model.onnx"
SHIFT_KEY = "valence_shift"
SHIFT_GRID = np.round(np.arange(-1.5, 1.5001, 0.05), 2)
NEGATIVE, NEUTRAL, POSITIVE = (SENTIMENTS.index(k) for k in ("negative", "neutral", "positive"))


def shift_valence(probs: np.ndarray, shift: float) -> np.ndarray:
    """`probs` [..., 3] (negative, neutral, positive) with p(positive)/p(negative) scaled by e^shift, their sum kept."""
    scaled = probs.copy()
    scaled[..., POSITIVE] *= np.exp(shift)
    polar = probs[..., NEGATIVE] + probs[..., POSITIVE]
    ratio = polar / np.maximum(scaled[..., NEGATIVE] + scaled[..., POSITIVE], 1e-12)
    scaled[..., NEGATIVE] *= ratio
    scaled[..., POSITIVE] *= ratio
    return scaled


def add_valence_shift(model: ModelProto, shift: float) -> ModelProto:
    """`model` (onnx.ModelProto) with its `sentiment` output passed through `shift_valence`, done in the graph. A
    model shifted before is shifted again (two shifts compose to their sum, which the metadata records)."""
    from onnx import TensorProto, helper

    graph = model.graph
    taken = {i.name for i in graph.initializer}
    prefix = next(f"vs{n}_" for n in range(len(taken) + 1) if f"vs{n}_scale" not in taken)
    raw = f"{prefix}sentiment_in"
    for node in graph.node:
        node.output[:] = [raw if name == "sentiment" else name for name in node.output]
    scale = [1.0] * 3
    scale[POSITIVE] = float(np.exp(shift))
    polar = [0.0 if i == NEUTRAL else 1.0 for i in range(3)]
    constants = {"scale": ([3], scale), "polar_mask": ([3], polar), "neutral_mask": ([3], [1.0 - m for m in polar]),
                 "polar_column": ([3, 1], polar), "epsilon": ([], [1e-12])}  # fmt: skip
    for name, (shape, values) in constants.items():
        graph.initializer.append(helper.make_tensor(prefix + name, TensorProto.FLOAT, shape, values))
    nodes = [
        ("Mul", [raw, "scale"], "scaled"),
        ("MatMul", [raw, "polar_column"], "polar"),  # [batch, 1]: p(negative) + p(positive)
        ("MatMul", ["scaled", "polar_column"], "scaled_polar"),
        ("Max", ["scaled_polar", "epsilon"], "scaled_polar_safe"),
        ("Div", ["polar", "scaled_polar_safe"], "ratio"),
        ("Mul", ["scaled", "ratio"], "rescaled"),
        ("Mul", ["rescaled", "polar_mask"], "poles"),
        ("Mul", [raw, "neutral_mask"], "neutral"),
        ("Add", ["poles", "neutral"], "sentiment"),
    ]
    named = lambda name: name if name in (raw, "sentiment") else prefix + name  # noqa: E731
    graph.node.extend(helper.make_node(op, [named(i) for i in inputs], [named(out)]) for op, inputs, out in nodes)
    before = [p for p in model.metadata_props if p.key == SHIFT_KEY]
    total = shift + sum(float(p.value) for p in before)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != SHIFT_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, (SHIFT_KEY, f"{total:g}")]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def fold_actors(fold: Path) -> list[int]:
    """The RAVDESS training actors a fold model did not see (from its metrics.json)."""
    return list(json.loads((fold / "metrics.json").read_text())["train"]["excluded_actors"])


def out_of_fold_scores(ravdess_root: Path, folds: list[Path]) -> tuple[list[Clip], list[np.ndarray], list[np.ndarray]]:
    """Per clip of every fold's left-out actors: the clip, its whole-utterance and its 500 ms windows' raw scores."""
    from moodstream.processors.acoustic import AcousticClassifier, AcousticOptions
    from moodstream.processors.endpointer import EndpointerOptions
    from moodstream.processors.vad import SileroStream, load_silero, speech_span
    from moodstream.schemas.audio import ms_to_samples

    vad, endpointing = SileroStream(load_silero()), EndpointerOptions()
    clips, wholes, windows = [], [], []
    for fold in folds:
        classifier = AcousticClassifier(AcousticOptions(model_path=fold / MODEL_FILE))
        for clip in ravdess(ravdess_root, fold_actors(fold)):
            pcm = (np.clip(clip.audio, -1, 1) * 32767).astype(np.int16)
            pcm = speech_span(vad, pcm, endpointing.start_threshold, ms_to_samples(endpointing.speech_pad_ms))
            scores = [classifier.classify(pcm)] + [classifier.classify(pcm[i : i + 8000])
                                                   for i in range(0, len(pcm) - 8000 + 1, 8000)]  # fmt: skip
            as_array = [np.array([s.sentiment[k] for k in SENTIMENTS]) for s in scores]
            clips.append(clip)
            wholes.append(as_array[0])
            windows.append(np.array(as_array[1:]).reshape(-1, 3))
    return clips, wholes, windows


def verdicts(wholes: list[np.ndarray], windows: list[np.ndarray], shift: float) -> list[str]:
    """The fusion stage's voice-only verdict per clip after the shift (words neutral)."""
    from moodstream.processors.fusion import Fuser

    fuser = Fuser()
    labels = []
    for whole, window in zip(wholes, windows, strict=True):
        audio = fuser.audio_distribution(
            _labelled(shift_valence(whole, shift)), [_labelled(w) for w in shift_valence(window, shift)]
        )
        labels.append(fuser.fuse(None, audio).label)
    return labels


def _labelled(probs: np.ndarray) -> dict[str, float]:
    return dict(zip(SENTIMENTS, map(float, probs), strict=True))


def fit_shift(clips: list[Clip], wholes: list[np.ndarray], windows: list[np.ndarray]) -> tuple[float, list[dict]]:
    """The grid shift with the best out-of-fold UAR (the smallest |shift| among ties) and the whole curve."""
    truth = [c.label for c in clips]
    curve = []
    for shift in SHIFT_GRID:
        report = three_way_report(truth, verdicts(wholes, windows, float(shift)))
        curve.append({"shift": float(shift), "uar": report["uar"], "recall": report.get("recall")})
    best = max(curve, key=lambda row: (round(row["uar"], 6), -abs(row["shift"])))
    return best["shift"], curve


def apply(model_path: Path, shift: float, out: Path) -> Path:
    import onnx

    model = add_valence_shift(onnx.load(str(model_path)), shift)
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / MODEL_FILE))
    digest = hashlib.sha256((out / MODEL_FILE).read_bytes()).hexdigest()
    (out / "SHA256SUMS").write_text(f"{digest}  {MODEL_FILE}\n")
    return out / MODEL_FILE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folds", nargs="+", type=Path, help="fold folders from train_voice.py --exclude-actors")
    parser.add_argument("--ravdess", required=True, type=Path, help="RAVDESS root (Actor_NN folders, any depth)")
    parser.add_argument("--apply", type=Path, help="model.onnx to bake the fitted shift into")
    parser.add_argument("--out", type=Path, help="folder for the shifted model.onnx (with --apply)")
    parser.add_argument("--shift", type=float, help="apply this shift instead of fitting one")
    args = parser.parse_args(argv)
    clips, wholes, windows = out_of_fold_scores(args.ravdess, args.folds)
    shift, curve = fit_shift(clips, wholes, windows)
    chosen = shift if args.shift is None else args.shift
    report = {"clips": len(clips), "fitted_shift": shift, "applied_shift": chosen, "curve": curve}
    if args.apply and args.out:
        report["model"] = str(apply(args.apply, chosen, args.out))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
