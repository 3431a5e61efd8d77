"""Benchmarks behind `moodstream bench …`: each prints progress to stderr and one JSON object as its last line."""
