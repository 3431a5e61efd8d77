"""Processing stages: pure cores (no Kafka inside) and the Faust worker that wires them to topics."""

import os

# Every stage computes on threads it sizes itself (one per model call). numpy's OpenBLAS would otherwise start a
# pool of one thread per core in every process, which spins after each small matrix product and takes those cores
# from the stages. Set before anything imports numpy (`moodstream` imports this package first for it, and a script
# using the cores alone gets it too); a value the user exports wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
