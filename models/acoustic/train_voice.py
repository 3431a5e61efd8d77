"""Train the voice (acoustic sentiment) model on acted emotion *and* ordinary calm speech of many voices, through the
channels callers use, and export it to ONNX (MFCC inside the graph, as in ``train_ravdess.py``).

Trained on RAVDESS alone, the model learnt RAVDESS: calm speakers it never heard came out negative or positive most of
the time. Here the neutral class also holds calm natural speech of many speakers (a labelled folder such as
``../shared/data/calm_speech``), one professional telephone-prompt voice (Asterisk's English Allison prompts) and
synthetic voices (espeak-ng accents and variants), and every clip goes through random channels (G.711 μ-law, GSM,
G.722, telephone band, reverberation, noise at 5–30 dB SNR, gain ±12 dB, speed/pitch ±10%; ``augment.py``).
Batches are balanced by class, and the neutral share by source, so no one corpus decides what "neutral" sounds like.

Speakers never cross between training and evaluation: RAVDESS actors 17–20, a fixed fifth of the calm-speech
speakers (by a hash of the speaker id) and every ``--held-out-voices`` folder (prompt voices of other speakers and
languages) are only scored. Training-only (the ``train`` extra; ``apt-get install espeak-ng sox``)::

    python -m moodstream.models.acoustic.train_voice --ravdess ../shared/data/ravdess \\
        --calm ../shared/data/calm_speech \\
        --prompts /usr/share/asterisk/sounds/en_US_f_Allison \\
        --prompt-texts /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz \\
        --held-out-voices /usr/share/asterisk/sounds/{fr_CA_f_June,it_IT_m_Carlo,ru_RU_f_IvrvoiceRU,fr,es}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from moodstream.models.acoustic.augment import channel
from moodstream.models.acoustic.corpus import EMOTIONS, Clip, espeak_voices, labelled_folder, prompt_voice, ravdess
from moodstream.models.acoustic.train_ravdess import MODEL_FILE, SENTIMENTS, build_model, export, onnx_predictor
from moodstream.models.metrics import three_way_report

RAVDESS_TEST_ACTORS = (17, 18, 19, 20)


@dataclass
class VoiceOptions:
    """One training run; saved beside the model."""

    steps: int = 4000
    """Optimisation steps."""
    channels: tuple[int, int, int] = (64, 128, 128)
    """Output channels of the three convolutions (the RAVDESS baseline's widths by default)."""
    batch_size: int = 32
    """Crops per step, drawn a third from each class."""
    channel_copies: int = 3
    """Channel-augmented copies made of each training clip before training (plus the clean clip)."""
    crop_s: tuple[float, float] = (0.5, 3.0)
    """Random crop length range (serving scores 0.5 s windows and whole utterances)."""
    calm_held_out_share: float = 0.2
    """Share of calm-speech speakers (by hash of the id) kept for evaluation only."""
    espeak_clips: int = 600
    """Sentences spoken by random espeak-ng voices for the neutral class."""
    learning_rate: float = 2e-3
    """AdamW peak learning rate (one-cycle)."""
    weight_decay: float = 1e-3
    """AdamW weight decay."""
    emotion_loss_weight: float = 0.3
    """Weight of the auxiliary 8-way loss (RAVDESS clips only)."""
    seed: int = 11
    """Seed of everything random."""
    threads: int = 2
    """torch threads."""
    excluded_actors: tuple[int, ...] = ()
    """RAVDESS training actors left out as well (a cross-validation fold, scored by `calibrate.py`)."""


def held_out_speaker(speaker: str, share: float) -> bool:
    return zlib.crc32(speaker.encode()) % 1000 < share * 1000


def prompt_texts(path: Path) -> list[str]:
    from moodstream.models.text.wordnet_text import asterisk_prompts

    return asterisk_prompts(path)


def evaluation_sets(args: argparse.Namespace, opts: VoiceOptions) -> dict[str, list[Clip]]:
    """Every evaluation set by name; each holds only speakers that no training split contains."""
    acted = ravdess(Path(args.ravdess), RAVDESS_TEST_ACTORS)
    calm = labelled_folder(Path(args.calm), "calm") if args.calm else []
    sets = {
        "ravdess_held_out_actors": acted,
        "calm_held_out_speakers": [c for c in calm if held_out_speaker(c.speaker, opts.calm_held_out_share)],
    }
    for folder in args.held_out_voices:
        sets[f"voice_{Path(folder).name}"] = prompt_voice(Path(folder), Path(folder).name)
    return sets


def training_clips(args: argparse.Namespace, opts: VoiceOptions, rng: np.random.Generator) -> list[Clip]:
    left_out = set(RAVDESS_TEST_ACTORS) | set(opts.excluded_actors)
    acted = ravdess(Path(args.ravdess), [a for a in range(1, 25) if a not in left_out])
    calm = labelled_folder(Path(args.calm), "calm") if args.calm else []
    texts = prompt_texts(Path(args.prompt_texts)) if args.prompt_texts else []
    texts += [t.lower() for t in (c.get("transcript", "") for c in _calm_rows(args)) if t]
    synthetic = espeak_voices([texts[i] for i in rng.integers(0, len(texts), opts.espeak_clips)], rng) if texts else []
    return (
        acted
        + [c for c in calm if not held_out_speaker(c.speaker, opts.calm_held_out_share)]
        + [clip for folder in args.prompts for clip in prompt_voice(Path(folder), Path(folder).name)]
        + synthetic
    )


def _calm_rows(args: argparse.Namespace) -> list[dict[str, str]]:
    from moodstream.models.acoustic.corpus import read_labels

    return read_labels(Path(args.calm)) if args.calm else []


def augmented_pool(clips: list[Clip], opts: VoiceOptions, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """Per clip: the clean audio and `channel_copies` channel-augmented versions (babble from other clips)."""
    pool = []
    for i, clip in enumerate(clips):
        babble = clips[int(rng.integers(0, len(clips)))].audio
        pool.append([clip.audio] + [channel(clip.audio, rng, babble) for _ in range(opts.channel_copies)])
        if (i + 1) % 500 == 0:
            print(json.dumps({"augmented": i + 1, "of": len(clips)}), flush=True)
    return pool


def class_sampler(clips: list[Clip], rng: np.random.Generator):
    """Draws clip indices: each class a third of the time; inside a class, each source equally often."""
    groups: dict[str, dict[str, list[int]]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(clip.label, {}).setdefault(clip.source, []).append(i)

    def draw(n: int) -> list[int]:
        picked = []
        for _ in range(n):
            sources = groups[SENTIMENTS[int(rng.integers(0, 3))]]
            members = list(sources.values())[int(rng.integers(0, len(sources)))]
            picked.append(members[int(rng.integers(0, len(members)))])
        return picked

    return draw


def crop(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if len(audio) > length:
        start = int(rng.integers(0, len(audio) - length))
        return audio[start : start + length]
    return np.resize(audio, length)  # repeats, as the serving classifier does for short input


def fit(clips: list[Clip], opts: VoiceOptions, rng: np.random.Generator):
    import torch

    pool = augmented_pool(clips, opts, rng)
    draw = class_sampler(clips, rng)
    targets3 = np.array([SENTIMENTS.index(c.label) for c in clips])
    targets8 = np.array([EMOTIONS.index(c.emotion) if c.emotion else -100 for c in clips])
    model = build_model(opts.channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.learning_rate, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=opts.learning_rate, total_steps=opts.steps)
    started, losses = time.time(), []
    model.train()
    for step in range(opts.steps):
        rows = draw(opts.batch_size)
        length = int(rng.uniform(*opts.crop_s) * 16000)
        batch = [crop(pool[i][int(rng.integers(0, len(pool[i])))], length, rng) for i in rows]
        audio = torch.from_numpy(np.stack(batch) * 10 ** (rng.uniform(-6, 6, (len(rows), 1)) / 20).astype(np.float32))
        logits3, logits8, _ = model(audio.clamp(-1, 1))
        loss = torch.nn.functional.cross_entropy(logits3, torch.from_numpy(targets3[rows]))
        emotion = torch.from_numpy(targets8[rows])
        if (emotion >= 0).any():
            auxiliary = torch.nn.functional.cross_entropy(logits8, emotion, ignore_index=-100)
            loss = loss + opts.emotion_loss_weight * auxiliary
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            print(json.dumps({"step": step + 1, "loss": round(float(np.mean(losses[-250:])), 4),
                              "seconds": round(time.time() - started)}), flush=True)  # fmt: skip
    model.eval()
    return model, round(time.time() - started, 1)


def score(predict, clips: list[Clip]) -> dict:
    """Whole-clip three-way report (`moodstream.models.metrics.three_way_report`) with the clip and speaker counts."""
    predicted = []
    for clip in clips:
        sentiment, _ = predict(clip.audio if len(clip.audio) >= 8000 else np.resize(clip.audio, 8000))
        predicted.append(SENTIMENTS[int(np.argmax(sentiment))])
    report = three_way_report([c.label for c in clips], predicted)
    return {"clips": len(clips), "speakers": len({c.speaker for c in clips})} | report


def options(args: argparse.Namespace) -> VoiceOptions:
    return VoiceOptions(steps=args.steps, threads=args.threads, channels=tuple(args.channels),
                        emotion_loss_weight=args.emotion_loss_weight, seed=args.seed,
                        excluded_actors=tuple(args.exclude_actors))  # fmt: skip


def report_on(model: Path, sets: dict[str, list[Clip]], baseline: str) -> dict:
    report: dict = {"held_out_actors": list(RAVDESS_TEST_ACTORS)}
    predict = onnx_predictor(model)
    report |= {name: score(predict, clips) for name, clips in sets.items()}
    if baseline:
        old = onnx_predictor(Path(baseline))
        report["baseline"] = {name: score(old, clips) for name, clips in sets.items()}
    return report


def train(args: argparse.Namespace) -> None:
    import torch

    opts = options(args)
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    rng = np.random.default_rng(opts.seed)
    train_clips = training_clips(args, opts, rng)
    sets = evaluation_sets(args, opts)
    print(json.dumps({"train_clips": len(train_clips), "by_source": Counter(c.source for c in train_clips),
                      "eval": {k: len(v) for k, v in sets.items()}}), flush=True)  # fmt: skip
    model, seconds = fit(train_clips, opts, rng)
    out = Path(args.out)
    export(model, out / MODEL_FILE)
    report = report_on(out / MODEL_FILE, sets, args.baseline)
    report["train"] = asdict(opts) | {"seconds": seconds, "clips": len(train_clips),
                                      "speakers": len({c.speaker for c in train_clips}),
                                      "by_source": dict(Counter(c.source for c in train_clips))}  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    digest = hashlib.sha256((out / MODEL_FILE).read_bytes()).hexdigest()
    (out / "SHA256SUMS").write_text(f"{digest}  {MODEL_FILE}\n")
    print(json.dumps(report), flush=True)


def evaluate(args: argparse.Namespace) -> None:
    """Score an existing model (e.g. the ensemble) on the evaluation sets; metrics.json goes beside it."""
    model = Path(args.evaluate)
    report = report_on(model, evaluation_sets(args, options(args)), args.baseline)
    report["members"] = args.members
    (model.parent / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The corpora every voice model trains and is judged on (`training_clips`, `evaluation_sets`)."""
    parser.add_argument("--ravdess", required=True, help="RAVDESS root (Actor_NN folders, any depth)")
    parser.add_argument("--calm", default="", help="folder with labels.tsv of calm speech (speaker column)")
    parser.add_argument("--prompts", nargs="*", default=[], help="folders of one prompt voice each, for training")
    parser.add_argument("--prompt-texts", default="", help="core-sounds-en.txt[.gz]: sentences for espeak-ng")
    parser.add_argument("--held-out-voices", nargs="*", default=[], help="prompt-voice folders only scored")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--baseline", default="", help="another model.onnx to score on the same sets")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--steps", type=int, default=VoiceOptions.steps)
    parser.add_argument("--threads", type=int, default=VoiceOptions.threads)
    parser.add_argument("--channels", type=int, nargs=3, default=list(VoiceOptions.channels))
    parser.add_argument("--emotion-loss-weight", type=float, default=VoiceOptions.emotion_loss_weight)
    parser.add_argument("--seed", type=int, default=VoiceOptions.seed)
    parser.add_argument(
        "--exclude-actors", type=int, nargs="*", default=[], help="RAVDESS training actors to leave out"
    )
    parser.add_argument("--evaluate", default="", help="only score this model.onnx on the evaluation sets")
    parser.add_argument("--members", nargs="*", default=[], help="with --evaluate: how its members were trained")
    args = parser.parse_args(argv)
    evaluate(args) if args.evaluate else train(args)


if __name__ == "__main__":
    main()
