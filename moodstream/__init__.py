"""moodstream: real-time fused text and acoustic sentiment of live speech, on Kafka.

Every part lives under this one namespace (`moodstream.schemas`, `.processors`, `.gateway`, `.producers`, `.models`;
their folders sit at the repository's top level and are mapped here at install), and the modules at this package's
root (settings, logs) are the bottom layer every other part may import.
"""

import os

# Every stage computes on threads it sizes itself (one per model call). numpy's OpenBLAS would otherwise start a
# pool of one thread per core in every process, which spins after each small matrix product and takes those cores
# from the stages. Set here, before anything under the namespace can import numpy; a value the user exports wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
