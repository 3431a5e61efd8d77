"""Processing stages: pure cores (no Kafka inside) and the Faust worker that wires them to topics."""

import os

# The cores compute on threads they size themselves; numpy's OpenBLAS would start a pool of one thread per core
# that spins after each small product and takes those cores from the stages, in a script that uses the cores
# without `moodstream` as well. Set before this package imports numpy; a value the user exports wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
