"""moodstream: real-time fused text and acoustic sentiment of live speech, on Kafka."""

# First, before anything imports numpy: the cores' package sets numpy's BLAS to one thread (its reason is there).
import processors  # noqa: F401

__version__ = "0.1.0"
