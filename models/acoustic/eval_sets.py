"""Write the voice model's held-out evaluation sets as `labels.tsv` folders that `moodstream bench sentiment` reads.

Every set holds only speakers that no training split of `train_voice.py` contains:
- `calm_held_out`: the calm-speech speakers the training run keeps out (same hash split), neutral;
- `ravdess_held_out`: RAVDESS actors 17–20, labels from the file names;
- `prompts_<voice>`: every prompt of a telephone-prompt voice folder (other speakers and languages), neutral;
- `<corpus>_sample`: `--sample` clips drawn at random (seed 7) from each `--labelled` folder, with its emotion and
  arousal columns (for scoring a leave-one-corpus-out fold's voice head on the corpus it left out).
Files are listed by absolute path, so nothing is copied::

    python -m moodstream.models.acoustic.eval_sets --out build/eval --ravdess ../shared/data/ravdess \\
        --calm ../shared/data/calm_speech --prompt-voices /usr/share/asterisk/sounds/{fr_CA_f_June,it_IT_m_Carlo} \\
        --labelled ../shared/data/emotion/turev ../shared/data/emotion/baved --sample 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from moodstream.models.acoustic.corpus import AUDIO_SUFFIXES, SENTIMENT_OF, ravdess_name, read_labels
from moodstream.models.acoustic.train_voice import RAVDESS_TEST_ACTORS, VoiceOptions, held_out_speaker
from moodstream.models.acoustic.voice_table import AROUSAL_OF, EMOTION4_OF

Row = tuple[Path, str, str, str, str]
"""path, label3, speaker, emotion, arousal."""


def write_set(folder: Path, rows: list[Row]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file\tlabel3\tspeaker\temotion\tarousal"]
    lines += [
        f"{path.resolve()}\t{label}\t{speaker}\t{emotion}\t{arousal}" for path, label, speaker, emotion, arousal in rows
    ]
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n")
    print(f"{folder}: {len(rows)} clips")


def sample_of(folder: Path, count: int) -> list[Row]:
    rows = read_labels(folder)
    chosen = np.random.default_rng(7).permutation(len(rows))[:count]
    return [(folder / rows[i]["file"], rows[i]["label3"], rows[i].get("speaker", ""), rows[i].get("emotion", ""),
             rows[i].get("arousal", "")) for i in sorted(chosen)]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ravdess", default="")
    parser.add_argument("--calm", default="")
    parser.add_argument("--prompt-voices", nargs="*", default=[])
    parser.add_argument("--labelled", nargs="*", default=[], help="labels.tsv folders to draw samples from")
    parser.add_argument("--sample", type=int, default=300, help="clips drawn from each --labelled folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.calm:
        share = VoiceOptions().calm_held_out_share
        calm = [r for r in read_labels(Path(args.calm)) if held_out_speaker(r["speaker"], share)]
        rows = [(Path(args.calm) / r["file"], r["label3"], r["speaker"], "neutral", "neutral") for r in calm]
        write_set(out / "calm_held_out", rows)
    if args.ravdess:
        rows = []
        for path in sorted(Path(args.ravdess).rglob("*")):
            named = ravdess_name(path) if path.suffix.lower() in (".wav", ".flac") else None
            if named and named[1] in RAVDESS_TEST_ACTORS:
                emotion, actor = named
                rows.append((path, SENTIMENT_OF[emotion], f"ravdess-{actor:02d}", EMOTION4_OF.get(emotion, ""),
                             AROUSAL_OF.get(emotion, "")))  # fmt: skip
        write_set(out / "ravdess_held_out", rows)
    for voice in map(Path, args.prompt_voices):
        files = sorted(p for p in voice.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        write_set(out / f"prompts_{voice.name}", [(p, "neutral", voice.name, "neutral", "neutral") for p in files])
    for folder in map(Path, args.labelled):
        write_set(out / f"{folder.name}_sample", sample_of(folder, args.sample))


if __name__ == "__main__":
    main()
