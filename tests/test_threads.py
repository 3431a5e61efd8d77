"""Every moodstream process runs numpy's BLAS on one thread unless the user says otherwise: the stages size their own
threads, and a BLAS pool per process spins on the cores they need."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = (
    "import {package}, numpy, threadpoolctl, json; "
    "print(json.dumps([p['num_threads'] for p in threadpoolctl.threadpool_info() if p['internal_api'] == 'openblas']))"
)


def blas_threads(package: str = "moodstream", **env: str) -> list[int]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | env
    probe = PROBE.format(package=package)
    done = subprocess.run([sys.executable, "-c", probe], env=clean, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("package", ["moodstream", "moodstream.processors"])
def test_a_process_of_moodstream_or_of_its_cores_alone_runs_numpys_blas_on_one_thread(package: str) -> None:
    assert blas_threads(package) == [1]


def test_a_thread_count_the_user_exports_wins() -> None:
    assert blas_threads(OPENBLAS_NUM_THREADS="2") == [2]
