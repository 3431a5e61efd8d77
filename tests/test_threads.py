"""Every moodstream process runs numpy's BLAS on one thread unless the user says otherwise: the stages size their own
threads, and a BLAS pool per process spins on the cores they need."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = (
    "import moodstream, numpy, threadpoolctl, json; "
    "print(json.dumps([p['num_threads'] for p in threadpoolctl.threadpool_info() if p['internal_api'] == 'openblas']))"
)


def blas_threads(**env: str) -> list[int]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | env
    done = subprocess.run([sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_a_moodstream_process_runs_numpys_blas_on_one_thread() -> None:
    assert blas_threads() == [1]


def test_a_thread_count_the_user_exports_wins() -> None:
    assert blas_threads(OPENBLAS_NUM_THREADS="2") == [2]
