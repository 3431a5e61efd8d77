"""Processing stages. This folder's modules are the pure cores (no Kafka inside: VAD, endpointer, transcriber,
classifiers, fusion and the per-session state machines); `runtime` is the stage runtime that runs cores on Faust, and
`stages` the Faust shells and the worker that wires them to topics."""
