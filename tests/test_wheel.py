"""The built wheel installs under one `moodstream` namespace: beside someone else's package named `models` it imports,
ships its models, and `moodstream up` serves a session end to end from outside the checkout."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from moodstream.broker.embedded import free_port
from tests.conftest import process_env, wait_ready

ROOT = Path(__file__).parent.parent
SPEECH = ROOT / "tests" / "data" / "three_prompts.wav"
GENERIC_NAMES = ("models", "schemas", "gateway", "processors", "producers")
FOLDERS = ("moodstream", *GENERIC_NAMES)


def build_wheel(out: Path) -> Path:
    """The wheel of a copy of the checkout's package sources (a build in the checkout would leave build/lib behind,
    whose stale files a later build packs)."""
    source = out / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("moodstream-*.whl")
    return wheel


def fresh_venv(path: Path) -> Path:
    """A new venv whose own site-packages holds only what this test installs; the dependencies come from this
    interpreter's site-packages, added as a plain path (its .pth files, such as the checkout's editable finder, are
    not run there)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.stack  # builds a wheel and starts `moodstream up` from it
def test_the_wheel_beside_a_package_named_models_runs_moodstream_up(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    wheel = build_wheel(tmp_path / "dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    others = tmp_path / "elsewhere" / "models"
    others.mkdir(parents=True)
    (others / "__init__.py").write_text('OWNER = "another project"\n')
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = process_env(None, PYTHONPATH=str(others.parent), MOODSTREAM_DATA_DIR=str(tmp_path / "data"))

    probe = (
        "import models, moodstream.models, moodstream.processors.stages.worker, moodstream.gateway.app, sys\n"
        "assert models.OWNER == 'another project', models.__file__\n"
        "assert (moodstream.models.TEXT_MODEL_DIR / 'model.int8.onnx').is_file()\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {GENERIC_NAMES!r} and m != 'models'], 'generic'\n"
        "print(moodstream.__file__)\n"
    )
    imported = subprocess.run([str(python), "-c", probe], cwd=run_dir, env=env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert str(tmp_path / "venv") in imported.stdout  # the wheel's package, not the checkout's

    port = free_port()
    moodstream = str(tmp_path / "venv" / "bin" / "moodstream")
    up = subprocess.Popen([moodstream, "up", "--port", str(port)], cwd=run_dir, env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}", [up], timeout_s=180)
        streamed = subprocess.run(
            [moodstream, "stream", str(SPEECH), "--fast",
             "--url", f"ws://127.0.0.1:{port}/ws/analyze"],
            cwd=run_dir, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert streamed.returncode == 0, streamed.stderr
        assert "session ended" in streamed.stdout + streamed.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()


def test_every_package_folder_is_in_the_wheels_package_list() -> None:
    """The package list in pyproject.toml is explicit (the folders map into one namespace): a new folder left out of
    it installs in the checkout but is missing from the wheel and the image."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folder_of = {folder: name for name, folder in setuptools["package-dir"].items()}
    found = set()
    for top in FOLDERS:
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((folder_of[top], *relative)))
    assert found == set(setuptools["packages"])
