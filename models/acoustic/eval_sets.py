"""Write the voice model's held-out evaluation sets as `labels.tsv` folders that `moodstream bench sentiment` reads.

Every set holds only speakers that no training split of `train_voice.py` contains:
- `calm_held_out`: the calm-speech speakers the training run keeps out (same hash split), neutral;
- `ravdess_held_out`: RAVDESS actors 17–20, labels from the file names;
- `prompts_<voice>`: every prompt of a telephone-prompt voice folder (other speakers and languages), neutral.
Files are listed by absolute path, so nothing is copied::

    python -m models.acoustic.eval_sets --out build/eval --ravdess ../shared/data/ravdess \\
        --calm ../shared/data/calm_speech --prompt-voices /usr/share/asterisk/sounds/{fr_CA_f_June,it_IT_m_Carlo}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.acoustic.corpus import AUDIO_SUFFIXES, SENTIMENT_OF, ravdess_name, read_labels
from models.acoustic.train_voice import RAVDESS_TEST_ACTORS, VoiceOptions, held_out_speaker


def write_set(folder: Path, rows: list[tuple[Path, str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file\tlabel3\tspeaker"] + [f"{path.resolve()}\t{label}\t{speaker}" for path, label, speaker in rows]
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n")
    print(f"{folder}: {len(rows)} clips")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ravdess", default="")
    parser.add_argument("--calm", default="")
    parser.add_argument("--prompt-voices", nargs="*", default=[])
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.calm:
        share = VoiceOptions().calm_held_out_share
        calm = [r for r in read_labels(Path(args.calm)) if held_out_speaker(r["speaker"], share)]
        write_set(out / "calm_held_out", [(Path(args.calm) / r["file"], r["label3"], r["speaker"]) for r in calm])
    if args.ravdess:
        rows = []
        for path in sorted(Path(args.ravdess).rglob("*")):
            named = ravdess_name(path) if path.suffix.lower() in (".wav", ".flac") else None
            if named and named[1] in RAVDESS_TEST_ACTORS:
                rows.append((path, SENTIMENT_OF[named[0]], f"ravdess-{named[1]:02d}"))
        write_set(out / "ravdess_held_out", rows)
    for voice in map(Path, args.prompt_voices):
        files = sorted(p for p in voice.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        write_set(out / f"prompts_{voice.name}", [(p, "neutral", voice.name) for p in files])


if __name__ == "__main__":
    main()
