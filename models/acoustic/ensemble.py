"""Merge voice models (each an ONNX graph from `train_voice.py`, MFCC inside) into one graph that averages their
`sentiment` and `emotion` probabilities; `mfcc` comes from the first. Serving loads one file as before.

    python -m moodstream.models.acoustic.ensemble build/voice-a/model.onnx build/voice-b/model.onnx \
        --out models/acoustic
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

MODEL_FILE = "model.onnx"


def merge(paths: list[Path], out: Path) -> None:
    import onnx
    from onnx import compose, helper

    members = [compose.add_prefix(onnx.load(str(p)), f"m{i}_") for i, p in enumerate(paths)]
    merged = members[0]
    for member in members[1:]:
        merged = compose.merge_models(merged, member, io_map=[])
    graph = merged.graph
    # one shared input: every member reads `audio`
    for i in range(len(paths)):
        for node in graph.node:
            node.input[:] = ["audio" if name == f"m{i}_audio" else name for name in node.input]
    kept_inputs = [i for i in graph.input if not i.name.startswith("m")]
    first_input = members[0].graph.input[0]
    del graph.input[:]
    graph.input.extend(kept_inputs or [helper.make_tensor_value_info("audio", first_input.type.tensor_type.elem_type,
                                                                     ["batch", "samples"])])  # fmt: skip
    outputs = {o.name: o for o in graph.output}
    del graph.output[:]
    scale = helper.make_tensor("ensemble_scale", onnx.TensorProto.FLOAT, [], [1.0 / len(paths)])
    graph.initializer.append(scale)
    for name in ("sentiment", "emotion"):
        summed = f"{name}_sum"
        graph.node.append(helper.make_node("Sum", [f"m{i}_{name}" for i in range(len(paths))], [summed]))
        graph.node.append(helper.make_node("Mul", [summed, "ensemble_scale"], [name]))
        template = outputs[f"m0_{name}"]
        graph.output.append(helper.make_tensor_value_info(name, template.type.tensor_type.elem_type, ["batch", None]))
    graph.node.append(helper.make_node("Identity", ["m0_mfcc"], ["mfcc"]))
    graph.output.append(helper.make_tensor_value_info("mfcc", onnx.TensorProto.FLOAT, ["batch", None, "frames"]))
    del merged.metadata_props[:]
    for key, value in {p.key: p.value for p in onnx.load(str(paths[0])).metadata_props}.items():
        entry = merged.metadata_props.add()
        entry.key, entry.value = key, value
    entry = merged.metadata_props.add()
    entry.key, entry.value = "members", ",".join(hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in paths)
    onnx.checker.check_model(merged)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(merged, str(out / MODEL_FILE))
    digest = hashlib.sha256((out / MODEL_FILE).read_bytes()).hexdigest()
    (out / "SHA256SUMS").write_text(f"{digest}  {MODEL_FILE}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="model.onnx files from train_voice.py")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)
    merge(args.models, args.out)


if __name__ == "__main__":
    main()
