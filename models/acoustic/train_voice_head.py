"""Fit the voice head (`processors.voice_head`) and judge every choice by leave-one-corpus-out.

Reads the tables of `voice_table.py`: per clip and channel copy, Whisper's pooled encoder states, the prosody and
the labels; per 500 ms window of each clean clip, its prosody. Four linear heads (standardised inputs, logistic
regression, each class and inside it each corpus an equal share of the weight):
- polarity (negative / neutral / positive): clips with a label3;
- emotion (angry / happy / sad / neutral): clips with a four-way emotion;
- arousal (p(high) against low and neutral): clips with an arousal rating;
- window arousal: the same target on the prosody of 500 ms windows.
The utterance heads read each feature and its departure from the session's baseline (`--inputs both`, served;
`raw` for comparison). A training clip's baseline is drawn: the mean of a random number of the same speaker's other
clips, so the heads meet every session age from the first utterance on.

Every run first fits one set of heads per corpus left out and scores that corpus (clean clips only), and the prompt
voices of `EVAL_ONLY` (never trained on, calm) with every fold, through `VoiceHead.read` as the serving path calls
it: each speaker's clips as one session in a fixed shuffled order, and (`clip:` keys) every clip as a session's
first. That is the leave-one-corpus-out matrix; with `--loco` it is all a run does. Otherwise the heads are then
fitted on every corpus (less RAVDESS actors 17–20, held out as for the CNN) and written to `--out`, the matrix beside
them (`voice_head_metrics.json`). Training-only (the `train` extra: scikit-learn)::

    python -m models.acoustic.train_voice_head --table build/voice-table.npz --windows build/voice-windows.npz \\
        --loco --json build/loco.json --fold-heads build/folds
    python -m models.acoustic.train_voice_head --table build/voice-table.npz --windows build/voice-windows.npz \\
        --out models/acoustic
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.acoustic.train_voice import RAVDESS_TEST_ACTORS
from models.metrics import three_way_report
from processors.fusion import Fuser
from processors.voice_head import EMOTIONS, HEADS, POLARITY, VOICE_HEAD_FILE, LinearHead, VoiceHead

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


def fit(table: dict[str, np.ndarray], windows: dict[str, np.ndarray], left_out: tuple[str, ...],
        opts: HeadOptions) -> VoiceHead:  # fmt: skip
    """The heads, trained without the corpora or speakers in `left_out`. With "both" inputs each training clip gets
    a drawn session history (`drawn_history`)."""

    def kept(rows: dict[str, np.ndarray]) -> np.ndarray:
        return np.flatnonzero(~np.isin(rows["corpus"], left_out) & ~np.isin(rows["speaker"], left_out))

    rows = kept(table)
    x = raw_features(table, opts.features)
    population = x[rows].mean(axis=0)
    if opts.inputs == "both":
        z = np.zeros((len(x), 2 * x.shape[1]), dtype=np.float32)
        z[rows] = np.concatenate((x[rows], x[rows] - drawn_history(x, table, rows, population, opts)), axis=1)
    else:
        z = x
    heads = utterance_heads(z, table, rows, opts.inverse_regularisation)
    window_rows = kept(windows)
    heads["window_arousal"] = arousal_head(windows["prosody"], windows, window_rows, opts.window_inverse_regularisation)
    return VoiceHead.build(ENCODER, {name: heads[name] for name in HEADS}, opts.inputs,
                           population if opts.inputs == "both" else None, opts.prior_weight)  # fmt: skip


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (the rank statistic), None with one class only."""
    if positive.all() or not positive.any():
        return None
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
        recalls = {
            e: round(float((predicted4[has4][truth4[has4] == e] == e).mean()), 4) for e in sorted(set(truth4[has4]))
        }
        result["emotion"] = {"uar": round(float(np.mean(list(recalls.values()))), 4), "recall": recalls}
    rated = table["arousal"][rows] != ""
    auc = _auc(arousal[rated], table["arousal"][rows][rated] == AROUSAL_HIGH)
    if auc is not None:
        result["arousal_auc"] = round(auc, 4)
    return result


SERVING_FUSER = Fuser()
"""Fusion with the served defaults: the rule the LOCO "voice" figures go through."""


def voice_label(polarity: np.ndarray, arousal: float) -> str:
    """The voice's label as fusion reads it without words: the calm default, by polarity or by arousal."""
    voice = dict(zip(POLARITY, map(float, polarity), strict=True))
    return SERVING_FUSER.fuse(None, voice, arousal=float(arousal)).label


def served_outputs(head: VoiceHead, table: dict[str, np.ndarray], x: np.ndarray, rows: np.ndarray, session: bool,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The head's outputs per row as the serving path reads them: each speaker's clips as one session in a fixed
    shuffled order (`session`), or every clip as a session's first."""
    verdicts = {}
    rng = np.random.default_rng(seed)
    for speaker in sorted(set(table["speaker"][rows])):
        baseline = head.baseline() if session else None
        for row in rng.permutation(rows[table["speaker"][rows] == speaker]):
            verdicts[row] = head.read(x[row], baseline)
    ordered = [verdicts[row] for row in rows]
    return (np.array([[v.polarity[k] for k in POLARITY] for v in ordered]),
            np.array([[v.emotion[k] for k in EMOTIONS] for v in ordered]),
            np.array([v.arousal for v in ordered]))  # fmt: skip


def window_auc(head: VoiceHead, windows: dict[str, np.ndarray], corpus: str) -> float | None:
    rows = np.flatnonzero((windows["corpus"] == corpus) & (windows["arousal"] != ""))
    scores = np.array([head.heads["window_arousal"].probabilities(p)[0] for p in windows["prosody"][rows]])
    auc = _auc(scores, windows["arousal"][rows] == AROUSAL_HIGH)
    return None if auc is None else round(auc, 4)


def loco(table: dict[str, np.ndarray], windows: dict[str, np.ndarray], opts: HeadOptions, heads: str = "") -> dict:
    """One fold per corpus of `LOCO_CORPORA`: fitted without it and the `EVAL_ONLY` voices, scored on both; each
    fold's head saved under `heads`/without-<corpus>/ when given (for `moodstream bench sentiment --voice-head`)."""
    clean = table["copy"] == 0
    folds: dict = {}
    x = raw_features(table, opts.features)
    for corpus in LOCO_CORPORA:
        started = time.perf_counter()
        fold: dict = {}
        head = fit(table, windows, (corpus, *EVAL_ONLY), opts)
        if heads:
            folder = Path(heads) / f"without-{corpus}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / VOICE_HEAD_FILE).write_text(head.to_json() + "\n")
        for scored in (corpus, *EVAL_ONLY):
            rows = np.flatnonzero(clean & (table["corpus"] == scored))
            fold[scored] = report(table, rows, *served_outputs(head, table, x, rows, True, opts.seed))
            fold[f"clip:{scored}"] = report(table, rows, *served_outputs(head, table, x, rows, False, opts.seed))
        fold[corpus]["window_arousal_auc"] = window_auc(head, windows, corpus)
        fold["seconds"] = round(time.perf_counter() - started, 1)
        folds[corpus] = fold
        for name in (corpus, f"clip:{corpus}"):
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
    head = fit(table, windows, (*EVAL_ONLY, *HELD_OUT_SPEAKERS), opts)
    with open(f"{args.out}/{VOICE_HEAD_FILE}", "w") as handle:
        handle.write(head.to_json() + "\n")
    with open(f"{args.out}/{METRICS_FILE}", "w") as handle:
        json.dump({"head": head.version} | matrix, handle, indent=1)
        handle.write("\n")
    print(json.dumps({"version": head.version, "options": asdict(opts)}))


if __name__ == "__main__":
    main()
