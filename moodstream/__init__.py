"""moodstream: real-time fused text and acoustic sentiment of live speech, on Kafka."""

import os

# Every stage computes on threads it sizes itself (one per model call). numpy's OpenBLAS would otherwise start a
# pool of one thread per core in every process, which spins after each small matrix product and takes that core
# from the stages. Set before anything imports numpy; a value the user exports wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
