"""Fit the voice head (`moodstream.processors.voice_head`) and judge every choice by leave-one-corpus-out.

Reads the tables of `voice_table.py`: per clip and channel copy, Whisper's pooled encoder states, the prosody and
the labels; per 500 ms window of each clean clip, its prosody. Four linear heads (standardised inputs, logistic
regression, each class and inside it each corpus an equal share of the weight):
- polarity (negative / neutral / positive): clips with a label3;
- emotion (angry / happy / sad / neutral): clips with a four-way emotion;
- arousal (p(high) against low and neutral): clips with an arousal rating;
- window arousal: the same target on the prosody of 500 ms windows.
The utterance heads learn from each feature and its departure from the same speaker's other clips (`--inputs
both`; `raw` for comparison): a training clip's baseline is the mean of a random number of the speaker's other clips,
so the heads learn which directions emotion moves a voice in, whoever speaks. Served, an utterance is read on its own
with the population's mean as its baseline, which folds the two halves into one linear map on the features (`fold`).

Every run first fits one set of heads per corpus left out and scores that corpus (clean clips only), and the prompt
voices of `EVAL_ONLY` (never trained on, calm) with every fold, through `VoiceHead.read` as the serving path calls
it; `session:` keys score the unfolded heads with each speaker's clips as one session in a fixed shuffled order,
read against the speaker's earlier clips (measured, not served: decision record 0009). That is the
leave-one-corpus-out matrix; with `--loco` it is all a run does. Otherwise the heads are then fitted on every corpus
(less RAVDESS actors 17–20, held out as for the CNN) and written to `--out`, the matrix beside them
(`voice_head_metrics.json`). Training-only (the `train` extra: scikit-learn)::

    python -m moodstream.models.acoustic.train_voice_head --table build/voice-table.npz \\
        --windows build/voice-windows.npz \\
        --loco --json build/loco.json --fold-heads build/folds
    python -m moodstream.models.acoustic.train_voice_head --table build/voice-table.npz \\
        --windows build/voice-windows.npz \\
        --out models/acoustic
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from moodstream.models.acoustic.train_voice import RAVDESS_TEST_ACTORS
from moodstream.models.metrics import auc, class_report, three_way_report
from moodstream.processors.fusion import Fuser
from moodstream.processors.voice_head import EMOTIONS, HEADS, POLARITY, VOICE_HEAD_FILE, LinearHead, VoiceHead

EVAL_ONLY = ("prompts-ru_RU_f_IvrvoiceRU", "prompts-fr", "prompts-es")
"""Calm prompt voices no head is trained on: Russian, French over GSM at 8 kHz, Colombian Spanish over GSM."""
LOCO_CORPORA = ("ravdess", "turev", "baved", "calm_speech")
HELD_OUT_SPEAKERS = tuple(f"ravdess-{actor:02d}" for actor in RAVDESS_TEST_ACTORS)
"""RAVDESS actors the shipped head never hears, so `bench sentiment` on them stays a held-out figure (as the CNN's)."""
AROUSAL_HIGH = "high"
METRICS_FILE = "voice_head_metrics.json"
"""Beside the head: the leave-one-corpus-out matrix of the options it was fitted with."""
ENCODER = "whisper-tiny.en:int8"
"""The transcriber the table's encoder states come from (`voice_table.py` runs the default one)."""


@dataclass(frozen=True)
class HeadOptions:
    """One fit; its options go into the LOCO report."""

    inverse_regularisation: float = 0.001
    """C of the logistic regressions on the utterance's features."""
    window_inverse_regularisation: float = 0.03
    """C of the window arousal head (21 prosody inputs)."""
    features: str = "encoder+prosody"
    """Which features the utterance heads read: "encoder", "prosody" or both (the serving path reads both)."""
    inputs: str = "both"
    """"both": the features and their departure from the session's baseline (served); "raw": the features alone."""
    prior_weight: float = 2.0
    """Utterances' worth of weight the population mean has in a session's baseline."""
    max_history: int = 20
    """Most earlier clips of the speaker drawn as a training clip's session history."""
    seed: int = 5
    """Seed of the history draws and the session orders."""


def raw_features(table: dict[str, np.ndarray], which: str) -> np.ndarray:
    parts = [table[name] for name in ("encoder", "prosody") if name in which.split("+")]
    return np.concatenate(parts, axis=1).astype(np.float32)


def sample_weights(labels: np.ndarray, corpora: np.ndarray) -> np.ndarray:
    """Each class the same share; inside a class, each corpus the same."""
    weights = np.zeros(len(labels))
    classes = np.unique(labels)
    for label in classes:
        members = labels == label
        sources = np.unique(corpora[members])
        for corpus in sources:
            chosen = members & (corpora == corpus)
            weights[chosen] = 1.0 / (chosen.sum() * len(sources) * len(classes))
    return weights / weights[weights > 0].mean()


def linear_head(x: np.ndarray, labels: np.ndarray, corpora: np.ndarray, order: tuple[str, ...], c: float) -> LinearHead:
    """A standardised logistic regression; `order` of two classes gives one logistic for the second."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = LogisticRegression(C=c, max_iter=3000)
    model.fit((x - mean) / scale, labels, sample_weight=sample_weights(labels, corpora))
    if len(order) == 2:
        sign = 1.0 if model.classes_[1] == order[1] else -1.0
        coef, intercept = sign * model.coef_, sign * model.intercept_
    else:
        index = [list(model.classes_).index(label) for label in order]
        coef, intercept = model.coef_[index], model.intercept_[index]
    return LinearHead(mean.astype(np.float32), scale.astype(np.float32), coef.astype(np.float32),
                      intercept.astype(np.float32))  # fmt: skip


def utterance_heads(x: np.ndarray, table: dict[str, np.ndarray], rows: np.ndarray, c: float) -> dict[str, LinearHead]:
    """Polarity, emotion and arousal heads on `rows` of `x` (aligned with `table`)."""
    corpora = table["corpus"][rows]
    heads = {}
    for name, column, order in (("polarity", "label3", POLARITY), ("emotion", "emotion", EMOTIONS)):
        labelled = np.isin(table[column][rows], order)
        heads[name] = linear_head(x[rows][labelled], table[column][rows][labelled], corpora[labelled], order, c)
    heads["arousal"] = arousal_head(x, table, rows, c)
    return heads


def arousal_head(x: np.ndarray, table: dict[str, np.ndarray], rows: np.ndarray, c: float) -> LinearHead:
    rated = table["arousal"][rows] != ""
    high = np.where(table["arousal"][rows][rated] == AROUSAL_HIGH, "high", "other")
    return linear_head(x[rows][rated], high, table["corpus"][rows][rated], ("other", "high"), c)


@dataclass(frozen=True)
class Fitted:
    """A fit: the served head, and for "both" inputs the heads on [features, departure] before folding."""

    served: VoiceHead
    unfolded: dict[str, LinearHead] | None
    population: np.ndarray


def fit(table: dict[str, np.ndarray], windows: dict[str, np.ndarray], left_out: tuple[str, ...],
        opts: HeadOptions) -> Fitted:  # fmt: skip
    """The heads, trained without the corpora or speakers in `left_out`. With "both" inputs each training clip reads
    its departure from a drawn session history (`drawn_history`), and the served heads are those folded for the
    population's mean as the baseline (`fold`)."""

    def kept(rows: dict[str, np.ndarray]) -> np.ndarray:
        return np.flatnonzero(~np.isin(rows["corpus"], left_out) & ~np.isin(rows["speaker"], left_out))

    rows = kept(table)
    x = raw_features(table, opts.features)
    population = x[rows].mean(axis=0)
    unfolded = None
    if opts.inputs == "both":
        z = np.zeros((len(x), 2 * x.shape[1]), dtype=np.float32)
        z[rows] = np.concatenate((x[rows], x[rows] - drawn_history(x, table, rows, population, opts)), axis=1)
        unfolded = utterance_heads(z, table, rows, opts.inverse_regularisation)
        heads = {name: fold(head, population) for name, head in unfolded.items()}
    else:
        heads = utterance_heads(x, table, rows, opts.inverse_regularisation)
    window_rows = kept(windows)
    heads["window_arousal"] = arousal_head(windows["prosody"], windows, window_rows, opts.window_inverse_regularisation)
    return Fitted(VoiceHead.build(ENCODER, {name: heads[name] for name in HEADS}), unfolded, population)


def fold(head: LinearHead, population: np.ndarray) -> LinearHead:
    """A head on [x, x − baseline] with the population's mean as the baseline, as one head on x:
    C₁(x − m₁)/s₁ + C₂(x − p − m₂)/s₂ + b = (C₁/s₁ + C₂/s₂)·x + b − C₁·m₁/s₁ − C₂·(p + m₂)/s₂."""
    half = len(population)
    coef, mean, scale = head.coef.astype(np.float64), head.mean.astype(np.float64), head.scale.astype(np.float64)
    c1, c2 = coef[:, :half] / scale[:half], coef[:, half:] / scale[half:]
    intercept = head.intercept - c1 @ mean[:half] - c2 @ (population + mean[half:])
    return LinearHead(np.zeros(half, np.float32), np.ones(half, np.float32), (c1 + c2).astype(np.float32),
                      intercept.astype(np.float32))  # fmt: skip


def report(table: dict[str, np.ndarray], rows: np.ndarray, polarity: np.ndarray, emotion: np.ndarray,
           arousal: np.ndarray) -> dict:  # fmt: skip
    """Figures of one scored corpus from the heads' outputs per row ([rows, 3], [rows, 4], [rows])."""
    result: dict = {"clips": len(rows), "speakers": len(set(table["speaker"][rows]))}
    label3 = table["label3"][rows]
    has3 = label3 != ""
    if has3.any():
        predicted = np.array(POLARITY)[polarity.argmax(axis=1)]
        full = three_way_report(list(label3[has3]), list(predicted[has3]))
        result["polarity"] = {k: full[k] for k in ("uar", "recall", "shares", "confusion")}
        ruled = np.array([voice_label(p, a) for p, a in zip(polarity, arousal, strict=True)])
        full = three_way_report(list(label3[has3]), list(ruled[has3]))
        result["voice"] = {k: full[k] for k in ("uar", "recall", "shares", "confusion")}
    truth4 = table["emotion"][rows]
    has4 = truth4 != ""
    if len(set(truth4[has4])) > 1:
        predicted4 = np.array(EMOTIONS)[emotion.argmax(axis=1)]
        result["emotion"] = class_report(list(truth4[has4]), list(predicted4[has4]), EMOTIONS)
    rated = table["arousal"][rows] != ""
    found = auc(arousal[rated], table["arousal"][rows][rated] == AROUSAL_HIGH)
    if found is not None:
        result["arousal_auc"] = round(found, 4)
    return result


SERVING_FUSER = Fuser()
"""Fusion with the served defaults: the rule the LOCO "voice" figures go through."""


def voice_label(polarity: np.ndarray, arousal: float) -> str:
    """The voice's label as fusion reads it without words: the calm default, by polarity or by arousal."""
    voice = dict(zip(POLARITY, map(float, polarity), strict=True))
    return SERVING_FUSER.fuse(None, voice, arousal=float(arousal)).label


def served_outputs(head: VoiceHead, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The served head's outputs per row of `x`, each read on its own as the serving path reads it."""
    verdicts = [head.read(row) for row in x]
    return (np.array([[v.polarity[k] for k in POLARITY] for v in verdicts]),
            np.array([[v.emotion[k] for k in EMOTIONS] for v in verdicts]),
            np.array([v.arousal for v in verdicts]))  # fmt: skip


def session_outputs(fitted: Fitted, table: dict[str, np.ndarray], x: np.ndarray, rows: np.ndarray,
                    opts: HeadOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The unfolded heads' outputs with each speaker's clips as one session in a fixed shuffled order, each read
    against the running mean of the speaker's earlier clips (shrunk to the population's by `prior_weight`): the
    session history that was measured and not served."""
    assert fitted.unfolded is not None
    rng = np.random.default_rng(opts.seed)
    z = np.zeros((len(rows), 2 * x.shape[1]), dtype=np.float32)
    for speaker in sorted(set(table["speaker"][rows])):
        total, count = np.zeros(x.shape[1]), 0
        for i in rng.permutation(np.flatnonzero(table["speaker"][rows] == speaker)):
            baseline = (total + opts.prior_weight * fitted.population) / (count + opts.prior_weight)
            z[i] = np.concatenate((x[rows[i]], x[rows[i]] - baseline))
            total, count = total + x[rows[i]], count + 1
    heads = fitted.unfolded
    return (np.stack([heads["polarity"].probabilities(row) for row in z]),
            np.stack([heads["emotion"].probabilities(row) for row in z]),
            np.array([heads["arousal"].probabilities(row)[0] for row in z]))  # fmt: skip


def window_auc(head: VoiceHead, windows: dict[str, np.ndarray], corpus: str) -> float | None:
    rows = np.flatnonzero((windows["corpus"] == corpus) & (windows["arousal"] != ""))
    scores = np.array([head.heads["window_arousal"].probabilities(p)[0] for p in windows["prosody"][rows]])
    found = auc(scores, windows["arousal"][rows] == AROUSAL_HIGH)
    return None if found is None else round(found, 4)


def loco(table: dict[str, np.ndarray], windows: dict[str, np.ndarray], opts: HeadOptions, heads: str = "") -> dict:
    """One fold per corpus of `LOCO_CORPORA`: fitted without it and the `EVAL_ONLY` voices, scored on both; each
    fold's head saved under `heads`/without-<corpus>/ when given (for `moodstream bench sentiment --voice-head`)."""
    clean = table["copy"] == 0
    folds: dict = {}
    x = raw_features(table, opts.features)
    for corpus in LOCO_CORPORA:
        started = time.perf_counter()
        fold: dict = {}
        fitted = fit(table, windows, (corpus, *EVAL_ONLY), opts)
        head = fitted.served
        if heads:
            folder = Path(heads) / f"without-{corpus}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / VOICE_HEAD_FILE).write_text(head.to_json() + "\n")
        for scored in (corpus, *EVAL_ONLY):
            rows = np.flatnonzero(clean & (table["corpus"] == scored))
            fold[scored] = report(table, rows, *served_outputs(head, x[rows]))
            if fitted.unfolded is not None:
                fold[f"session:{scored}"] = report(table, rows, *session_outputs(fitted, table, x, rows, opts))
        fold[corpus]["window_arousal_auc"] = window_auc(head, windows, corpus)
        fold["seconds"] = round(time.perf_counter() - started, 1)
        folds[corpus] = fold
        for name in (corpus, f"session:{corpus}"):
            if name in fold:
                print(json.dumps({name: summary(fold[name])}), flush=True)
    return {"options": asdict(opts), "folds": folds}


def summary(scored: dict) -> dict:
    """The figures the issue judges by."""
    polarity, voice = scored.get("polarity", {}), scored.get("voice", {})
    return {
        "head_uar3": polarity.get("uar"),
        "uar3": voice.get("uar"),
        "negative_recall": voice.get("recall", {}).get("negative"),
        "neutral_share": voice.get("shares", {}).get("neutral"),
        "uar4": scored.get("emotion", {}).get("uar"),
        "arousal_auc": scored.get("arousal_auc"),
        "window_arousal_auc": scored.get("window_arousal_auc"),
    }


def drawn_history(x: np.ndarray, table: dict[str, np.ndarray], rows: np.ndarray, population: np.ndarray,
                  opts: HeadOptions) -> np.ndarray:  # fmt: skip
    """For each of `rows`, the baseline a session would hold: the mean of a random number (0…max_history) of the same
    speaker's other clips of the same channel copy, shrunk towards the population mean by `prior_weight`."""
    rng = np.random.default_rng(opts.seed)
    keys = np.char.add(table["speaker"][rows].astype(str), table["copy"][rows].astype(str))
    baselines = np.zeros((len(rows), x.shape[1]), dtype=np.float32)
    for key in np.unique(keys):
        members = rows[keys == key]
        for i in np.flatnonzero(keys == key):
            others = members[members != rows[i]]
            n = int(rng.integers(0, min(opts.max_history, len(others)) + 1))
            history = x[rng.choice(others, n, replace=False)].sum(axis=0) if n else 0.0
            baselines[i] = (history + opts.prior_weight * population) / (n + opts.prior_weight)
    return baselines


def load(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--windows", required=True)
    parser.add_argument("--loco", action="store_true", help="leave-one-corpus-out matrix instead of a fit")
    parser.add_argument("--json", default="", help="write the matrix here")
    parser.add_argument("--out", default="models/acoustic", help="folder for the fitted head and its matrix")
    parser.add_argument("--fold-heads", default="", help="save each fold's head under this folder")
    parser.add_argument("--c", type=float, default=HeadOptions.inverse_regularisation)
    parser.add_argument("--features", default=HeadOptions.features)
    parser.add_argument("--inputs", default=HeadOptions.inputs, choices=("raw", "both"))
    args = parser.parse_args(argv)
    opts = HeadOptions(inverse_regularisation=args.c, features=args.features, inputs=args.inputs)
    table, windows = load(args.table), load(args.windows)
    matrix = loco(table, windows, opts, args.fold_heads)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(matrix, handle, indent=1)
    if args.loco:
        return
    head = fit(table, windows, (*EVAL_ONLY, *HELD_OUT_SPEAKERS), opts).served
    with open(f"{args.out}/{VOICE_HEAD_FILE}", "w") as handle:
        handle.write(head.to_json() + "\n")
    with open(f"{args.out}/{METRICS_FILE}", "w") as handle:
        json.dump({"head": head.version} | matrix, handle, indent=1)
        handle.write("\n")
    print(json.dumps({"version": head.version, "options": asdict(opts)}))


if __name__ == "__main__":
    main()
