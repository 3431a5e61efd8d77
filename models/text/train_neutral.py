"""Teach the SST-2 sentiment model a third class, neutral: text whose words carry no sentiment.

SST-2 has only positive and negative phrases, so the binary model is confidently polar about plain statements
("Dogs are sitting by the door": 0.86 negative), and fusion cannot tell words that say nothing from words that
say something. This continues fine-tuning the SST-2 checkpoint (``train_sst2 train``) with three labels
(0 negative, 1 positive, 2 neutral; the first two keep their rows of the old head) on SST-2 train rows (never its
held-out rows or dev) plus lexically neutral everyday sentences: WordNet's usage examples (Debian package
``wordnet-base``) that contain no word of the VADER sentiment lexicon (PyPI ``vaderSentiment``, MIT). WordNet
examples that VADER scores clearly polar go in with that polarity: with movie-review phrases as the only polar text,
a first run learnt "an everyday sentence is neutral" and called "The service was terrible." neutral (0.88).
WordNet's own words and collocations (again without lexicon words) go in as neutral fragments: SST-2 is full of
short polar phrases, and without them single words such as "six" came out 0.94 positive.

Reproduce the committed model::

    python -m models.text.train_sst2 train --sst2 ../shared/data/sst2        # the binary checkpoint, once
    python -m models.text.train_neutral --sst2 ../shared/data/sst2 --wordnet /usr/share/wordnet \
        --probe /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz

``--probe`` names neutral text kept out of training (the Asterisk telephone prompts) to report how the neutral
class carries over to another domain.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from models.text.train_sst2 import (
    ONNX_INT8,
    TOKENIZER,
    TrainOptions,
    export_onnx,
    fine_tune,
    onnx_logits,
    quantize_int8,
    read_tsv,
    sha256,
)

NEGATIVE, POSITIVE, NEUTRAL = 0, 1, 2
LABELS = {NEGATIVE: "negative", POSITIVE: "positive", NEUTRAL: "neutral"}


@dataclass
class NeutralOptions:
    """Hyper-parameters of the neutral-class run; saved beside the model."""

    sst2_rows: int = 20000
    """SST-2 train rows (outside the held-out split) mixed in so polarity is not forgotten."""
    neutral_rows: int = 10000
    """Lexically neutral WordNet sentences used for training."""
    neutral_held_out: int = 1000
    """Further neutral sentences kept for the report and the calibration."""
    fragment_rows: int = 4000
    """WordNet lemmas ("bus station", "ninth") used as neutral fragments; spoken transcripts are often one word."""
    polar_threshold: float = 0.5
    """|VADER compound| at or above which a WordNet example using lexicon words counts as positive or negative."""
    polar_held_out: int = 500
    """VADER-polar WordNet examples kept for the report and the calibration."""
    epochs: float = 1.0
    """Passes over the mixed set."""
    batch_size: int = 32
    """Sentences per optimisation step."""
    learning_rate: float = 3e-5
    """Peak AdamW learning rate (lower than the first run: this continues a trained model)."""
    warmup_fraction: float = 0.06
    """Share of the steps spent warming the learning rate up."""
    seed: int = 17
    """Seed for sampling, batching and the new head row."""
    threads: int = 2
    """torch intra-op threads."""


def sentiment_lexicon() -> set[str]:
    """Every token of the VADER lexicon, whatever its valence: a sentence using none carries no lexical sentiment."""
    text = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text(encoding="utf-8")
    return {line.split("\t", 1)[0].lower() for line in text.splitlines() if line.strip()}


def words(sentence: str) -> list[str]:
    return re.findall(r"[a-z']+", sentence.lower())


def wordnet_examples(wordnet: Path) -> list[str]:
    """The quoted usage examples in WordNet's data files, deduplicated, in file order."""
    seen: dict[str, None] = {}
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue
            for example in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]):
                seen.setdefault(example.strip().rstrip(";").strip(), None)
    return list(seen)


def wordnet_lemmas(wordnet: Path) -> list[str]:
    """Every lemma of WordNet's index files, underscores as spaces."""
    lemmas = []
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet / f"index.{part}").read_text(encoding="latin-1").splitlines():
            if not line.startswith(" "):
                lemmas.append(line.split(" ", 1)[0].replace("_", " "))
    return lemmas


def lexically_neutral(sentences: list[str], lexicon: set[str]) -> list[str]:
    return [s for s in sentences if words(s) and not lexicon.intersection(words(s))]


def lexically_polar(sentences: list[str], lexicon: set[str], threshold: float) -> list[tuple[str, int]]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    polar = []
    for sentence in sentences:
        if lexicon.intersection(words(sentence)):
            compound = analyzer.polarity_scores(sentence)["compound"]
            if abs(compound) >= threshold:
                polar.append((sentence, POSITIVE if compound > 0 else NEGATIVE))
    return polar


def asterisk_prompts(path: Path) -> list[str]:
    """`name: text` lines of the Asterisk prompt list, bracketed non-speech entries skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = [line.split(":", 1)[1].strip() for line in handle if ":" in line and not line.startswith(";")]
    return [t for t in lines if t and not t.startswith("[")]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(labels)), labels]
        return float(-np.mean(np.log(np.clip(p, 1e-9, 1.0))))

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 400))
    best = float(grid[np.argmin([nll(t) for t in grid])])
    return best, nll(1.0), nll(best)


def train(args: argparse.Namespace) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    opts = NeutralOptions(epochs=args.epochs, threads=args.threads)
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    rng = random.Random(opts.seed)
    out, work, start_from = Path(args.out), Path(args.work), Path(args.checkpoint)

    sst2 = Path(args.sst2)
    sentences, labels = read_tsv(sst2 / "train.tsv")
    split = list(range(len(sentences)))
    random.Random(TrainOptions().seed).shuffle(split)  # the binary run's split: its held-out rows stay unseen
    held_sst2 = split[: TrainOptions().validation_size]
    sst2_train = rng.sample(split[TrainOptions().validation_size :], opts.sst2_rows)
    dev_sentences, dev_labels = read_tsv(sst2 / "dev.tsv")

    lexicon = sentiment_lexicon()
    examples = wordnet_examples(Path(args.wordnet))
    neutral = lexically_neutral(examples, lexicon)
    rng.shuffle(neutral)
    neutral_held = neutral[: opts.neutral_held_out]
    neutral_train = neutral[opts.neutral_held_out : opts.neutral_held_out + opts.neutral_rows]
    fragments = lexically_neutral(wordnet_lemmas(Path(args.wordnet)), lexicon)
    fragments = rng.sample(sorted(set(fragments) - set(neutral)), opts.fragment_rows)
    neutral_train += fragments
    polar = lexically_polar(examples, lexicon, opts.polar_threshold)
    rng.shuffle(polar)
    polar_held, polar_train = polar[: opts.polar_held_out], polar[opts.polar_held_out :]

    texts = [sentences[i] for i in sst2_train] + neutral_train + [s for s, _ in polar_train]
    targets = [labels[i] for i in sst2_train] + [NEUTRAL] * len(neutral_train) + [y for _, y in polar_train]

    tokenizer = Tokenizer.from_file(str(start_from / TOKENIZER))
    tokenizer.enable_truncation(TrainOptions().max_length)
    tokenizer.no_padding()
    encoded = [tokenizer.encode(s).ids for s in texts]

    model = AutoModelForSequenceClassification.from_pretrained(start_from)
    old = model.classifier
    head = torch.nn.Linear(old.in_features, 3)
    with torch.no_grad():
        head.weight[:2] = old.weight
        head.bias[:2] = old.bias
        head.weight[2].normal_(0.0, 0.02)
        head.bias[2] = 0.0
    model.classifier = head
    model.num_labels = 3
    model.config.num_labels = 3
    model.config.id2label = dict(LABELS)
    model.config.label2id = {v: k for k, v in LABELS.items()}

    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.learning_rate, weight_decay=0.01)
    total_steps = int(math.ceil(len(texts) / opts.batch_size) * opts.epochs)
    loop = TrainOptions(batch_size=opts.batch_size, warmup_fraction=opts.warmup_fraction, bucket_batches=50)
    started = time.time()
    step = fine_tune(model, optimizer, encoded, targets, list(range(len(texts))), total_steps, loop, rng)

    checkpoint = work / "checkpoint-neutral"
    model.save_pretrained(checkpoint)
    shutil.copy(start_from / TOKENIZER, checkpoint / TOKENIZER)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.fp32.onnx"
    export_onnx(checkpoint, fp32)
    quantize_int8(fp32, out / ONNX_INT8)
    fp32.unlink()
    shutil.copy(checkpoint / TOKENIZER, out / TOKENIZER)

    report = evaluate(
        out,
        dev=(dev_sentences, dev_labels),
        held_sst2=([sentences[i] for i in held_sst2], [labels[i] for i in held_sst2]),
        held_neutral=neutral_held,
        held_polar=polar_held,
        probe=asterisk_prompts(Path(args.probe)) if args.probe else [],
    )
    report["train"] = asdict(opts) | {
        "start_from": "the train_sst2 checkpoint (its figures: binary_run)",
        "neutral_source": "WordNet usage examples without VADER lexicon words (wordnet-base, vaderSentiment 3.3.2)",
        "neutral_available": len(neutral),
        "polar_wordnet_available": len(polar),
        "steps": step,
        "train_seconds": round(time.time() - started, 1),
    }
    previous = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    report["binary_run"] = previous.get("binary_run", previous) or None  # the figures of the checkpoint started from
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "SHA256SUMS").write_text("".join(f"{sha256(out / n)}  {n}\n" for n in (ONNX_INT8, TOKENIZER)))
    print(json.dumps(report))


def evaluate(
    out: Path,
    dev: tuple[list[str], list[int]],
    held_sst2: tuple[list[str], list[int]],
    held_neutral: list[str],
    held_polar: list[tuple[str, int]],
    probe: list[str],
) -> dict:
    """Accuracy on SST-2 (positive vs negative only, as the GLUE task asks), how often polar text is called
    neutral, neutral recall; fits the temperature on the held-out rows of every kind (never on dev)."""
    onnx_path, tokenizer_path = out / ONNX_INT8, out / TOKENIZER
    dev_logits = onnx_logits(onnx_path, tokenizer_path, dev[0])
    held_texts = held_sst2[0] + held_neutral + [s for s, _ in held_polar]
    held_logits = onnx_logits(onnx_path, tokenizer_path, held_texts)
    held_labels = np.array(held_sst2[1] + [NEUTRAL] * len(held_neutral) + [y for _, y in held_polar])
    n_neutral_end = len(held_sst2[0]) + len(held_neutral)
    temperature, nll_before, nll_after = fit_temperature(held_logits, held_labels)
    (out / "calibration.json").write_text(
        json.dumps(
            {
                "temperature": round(temperature, 4),
                "fitted_on": f"held-out rows: {len(held_sst2[0])} SST-2 train, {len(held_neutral)} neutral and "
                f"{len(held_polar)} VADER-polar WordNet sentences",
                "nll_before": round(nll_before, 4),
                "nll_after": round(nll_after, 4),
            },
            indent=2,
        )
        + "\n"
    )
    dev_labels = np.array(dev[1])
    n_sst = len(held_sst2[0])
    report = {
        "dev_accuracy_int8": float((dev_logits[:, 1] > dev_logits[:, 0]).astype(int).__eq__(dev_labels).mean()),
        "dev_called_neutral": float((dev_logits.argmax(1) == NEUTRAL).mean()),
        "heldout_sst2_accuracy_int8": float(
            ((held_logits[:n_sst, 1] > held_logits[:n_sst, 0]).astype(int) == held_labels[:n_sst]).mean()
        ),
        "heldout_sst2_called_neutral": float((held_logits[:n_sst].argmax(1) == NEUTRAL).mean()),
        "heldout_neutral_recall": float((held_logits[n_sst:n_neutral_end].argmax(1) == NEUTRAL).mean()),
        "heldout_wordnet_polar_accuracy": float(
            (held_logits[n_neutral_end:].argmax(1) == held_labels[n_neutral_end:]).mean()
        ),
        "temperature": round(temperature, 4),
    }
    if probe:
        p = softmax(onnx_logits(onnx_path, tokenizer_path, probe), temperature)
        report["probe_sentences"] = len(probe)
        report["probe_called_neutral"] = float((p.argmax(1) == NEUTRAL).mean())
        report["probe_mean_p_neutral"] = float(p[:, NEUTRAL].mean())
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", required=True, help="folder with train.tsv and dev.tsv")
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="WordNet dict folder (data.noun …)")
    parser.add_argument("--probe", default="", help="held-out neutral prompts (core-sounds-en.txt[.gz])")
    parser.add_argument("--checkpoint", default="build/text-train/checkpoint", help="the binary SST-2 checkpoint")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--work", default="build/text-train")
    parser.add_argument("--epochs", type=float, default=NeutralOptions.epochs)
    parser.add_argument("--threads", type=int, default=NeutralOptions.threads)
    args = parser.parse_args(argv)
    train(args)


if __name__ == "__main__":
    main()
