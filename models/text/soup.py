"""Average fine-tuned checkpoints that share one start into one model (a "uniform soup", Wortsman et al. 2022), then
export, calibrate and score it like a single run.

Runs from the same checkpoint with other seeds or mixes land in one basin of the loss, so their mean weights score
at least as well as a typical member and vary less from run to run than any one member does; serving cost is one
model's. The shipped text model is the soup of six stage-3 runs (see MODEL_CARD.md)::

    python -m moodstream.models.text.soup build/text-s3-*/checkpoint-conversation \\
        --conversation ../shared/data/conversation \\
        --sst2 ../shared/data/sst2 --wordnet /usr/share/wordnet --out models/text
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from moodstream.models.text.train_conversation import ConversationOptions, build_model, held_out_rows, publish
from moodstream.models.text.train_sst2 import TOKENIZER


def average_checkpoints(members: list[Path], out: Path) -> None:
    """Write the element-wise mean of the members' float weights (integer buffers from the first) as a checkpoint."""
    import torch

    states = [build_model(str(m)).state_dict() for m in members]
    mean = {
        name: torch.stack([s[name].float() for s in states]).mean(0) if first.is_floating_point() else first
        for name, first in states[0].items()
    }
    model = build_model(str(members[0]))
    model.load_state_dict(mean)
    model.save_pretrained(out)
    shutil.copy(members[0] / TOKENIZER, out / TOKENIZER)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("members", nargs="+", type=Path, help="checkpoints trained from one common checkpoint")
    parser.add_argument("--conversation", required=True, help="folder with dailydialog_*.tsv and meld_*.tsv")
    parser.add_argument("--sst2", required=True, help="folder with train.tsv and dev.tsv")
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="WordNet dict folder (data.noun …)")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--work", default="build/text-soup")
    args = parser.parse_args(argv)
    checkpoint = Path(args.work) / "checkpoint-soup"
    average_checkpoints(args.members, checkpoint)
    opts = ConversationOptions()
    held = held_out_rows(Path(args.conversation), Path(args.sst2), Path(args.wordnet), opts)
    info = {"soup_of": [str(m) for m in args.members]}
    publish(checkpoint, Path(args.out), held, Path(args.conversation), Path(args.sst2), opts, info)


if __name__ == "__main__":
    main()
