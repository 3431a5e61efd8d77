"""Fit the encoder voice head (`processors.voice_head`): Whisper tiny.en's encoder states of each clip, pooled over the
speech exactly as the transcriber pools them while serving, through a standardised multinomial logistic regression.

Same data and speaker splits as the voice CNN (``train_voice.py``): RAVDESS actors 01–16 for the poles and neutral,
calm speech of many voices, the Allison prompts and espeak-ng voices for neutral, each clip with channel-augmented
copies; RAVDESS 17–20, the held-out fifth of the calm speakers and every ``--held-out-voices`` folder are only scored.
Samples are weighted so each class counts a third and, inside neutral, each source equally. Training-only (the
``train`` extra: scikit-learn)::

    python -m models.acoustic.train_encoder_head --ravdess ../shared/data/ravdess --calm ../shared/data/calm_speech \\
        --prompts /usr/share/asterisk/sounds/en_US_f_Allison \\
        --prompt-texts /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz \\
        --held-out-voices /usr/share/asterisk/sounds/{fr_CA_f_June,it_IT_m_Carlo,ru_RU_f_IvrvoiceRU,fr,es}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.acoustic.corpus import Clip
from models.acoustic.train_ravdess import SENTIMENTS
from models.acoustic.train_voice import (
    VoiceOptions,
    add_data_arguments,
    augmented_pool,
    evaluation_sets,
    training_clips,
)
from models.metrics import three_way_report
from processors.voice_head import HEAD_FILE, EncoderVoiceHead


@dataclass(frozen=True)
class HeadOptions:
    """One fit; saved beside the head."""

    inverse_regularisation: float = 0.03
    """C of the logistic regression (picked by grouped 4-fold cross-validation over training speakers)."""
    channel_copies: int = 2
    """Channel-augmented copies of each training clip (plus the clean clip)."""
    seed: int = 7
    """Seed of the espeak-ng draws and the augmentation."""
    processes: int = 2
    """Encoder processes (one thread each)."""


_transcriber = None


def _start_encoder() -> None:
    global _transcriber
    from processors.transcriber import Transcriber, TranscriberOptions

    _transcriber = Transcriber(TranscriberOptions(cpu_threads=1, voice_head=False))


def _features_of(audio: np.ndarray) -> np.ndarray:
    assert _transcriber is not None
    return _transcriber.voice_features(audio)


def _model_id(_: object) -> str:
    assert _transcriber is not None
    return _transcriber.model_id


def encoder_features(audios: list[np.ndarray], processes: int) -> tuple[np.ndarray, str]:
    """Pooled encoder states of each clip, and the encoder's model id. Spawned processes: CTranslate2's threads do
    not survive a fork."""
    with multiprocessing.get_context("spawn").Pool(processes, initializer=_start_encoder) as pool:
        return np.stack(pool.map(_features_of, audios, chunksize=8)), pool.map(_model_id, [None])[0]


def sample_weights(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Each class a third of the weight; inside neutral, each source the same share."""
    weights = np.ones(len(labels))
    for label in SENTIMENTS:
        members = labels == label
        groups = np.unique(sources[members]) if label == "neutral" else np.array(["*"])
        for group in groups:
            chosen = members & ((sources == group) if label == "neutral" else True)
            weights[chosen] = 1.0 / (chosen.sum() * len(groups))
    return weights / weights.mean()


def fit(features: np.ndarray, labels: np.ndarray, sources: np.ndarray, opts: HeadOptions, encoder: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=opts.inverse_regularisation, max_iter=3000)
    model.fit(scaler.transform(features), labels, sample_weight=sample_weights(labels, sources))
    order = [list(model.classes_).index(label) for label in SENTIMENTS]
    version = hashlib.sha256(model.coef_.tobytes()).hexdigest()[:12]
    return EncoderVoiceHead(
        encoder=encoder,
        classes=SENTIMENTS,
        mean=scaler.mean_.astype(np.float32),
        scale=scaler.scale_.astype(np.float32),
        coef=model.coef_[order].astype(np.float32),
        intercept=model.intercept_[order].astype(np.float32),
        version=f"encoder-head-{version}",
    )


def score(head: EncoderVoiceHead, clips: list[Clip], processes: int) -> dict:
    features, _ = encoder_features([c.audio for c in clips], processes)
    predicted = [max(p, key=p.__getitem__) for p in map(head.sentiment, features)]
    report = three_way_report([c.label for c in clips], predicted)
    return {"clips": len(clips), "speakers": len({c.speaker for c in clips})} | report


def report_on(head: EncoderVoiceHead, args: argparse.Namespace, voice_opts: VoiceOptions) -> dict:
    sets = evaluation_sets(args, voice_opts)
    return {name: score(head, held_out, HeadOptions.processes) for name, held_out in sets.items()}


def evaluate(args: argparse.Namespace) -> None:
    """Score an existing head on the evaluation sets; its metrics go beside it."""
    path = Path(args.evaluate)
    report = report_on(EncoderVoiceHead.load(path), args, VoiceOptions())
    (path.parent / "encoder_head_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)


def train(args: argparse.Namespace) -> None:
    opts = HeadOptions(inverse_regularisation=args.c, seed=args.seed)
    rng = np.random.default_rng(opts.seed)
    voice_opts = VoiceOptions(seed=opts.seed, channel_copies=opts.channel_copies)
    clips = training_clips(args, voice_opts, rng)
    pool = augmented_pool(clips, voice_opts, rng)
    audios = [version for versions in pool for version in versions]
    labels = np.array([c.label for c, versions in zip(clips, pool, strict=True) for _ in versions])
    sources = np.array([c.source for c, versions in zip(clips, pool, strict=True) for _ in versions])
    started = time.perf_counter()
    features, encoder = encoder_features(audios, opts.processes)
    head = fit(features, labels, sources, opts, encoder)
    out = Path(args.out)
    (out / HEAD_FILE).write_text(head.to_json() + "\n")
    report = report_on(head, args, voice_opts)
    report["train"] = asdict(opts) | {
        "seconds": round(time.perf_counter() - started, 1),
        "clips": len(clips),
        "rows": len(audios),
        "by_source": dict(Counter(c.source for c in clips)),
    }
    (out / "encoder_head_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--c", type=float, default=HeadOptions.inverse_regularisation, help="inverse regularisation")
    parser.add_argument("--seed", type=int, default=HeadOptions.seed)
    parser.add_argument("--evaluate", default="", help="only score this encoder_head.json on the evaluation sets")
    args = parser.parse_args(argv)
    evaluate(args) if args.evaluate else train(args)


if __name__ == "__main__":
    main()
