"""moodstream: real-time fused text and acoustic sentiment of live speech, on Kafka."""

__version__ = "0.1.0"
