"""The `moodstream` command, its benchmarks and the clients it fronts (tail, analytics, the `up` supervisor)."""
