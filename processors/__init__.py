"""Processing stages: pure cores (no Kafka inside) and the Faust worker that wires them to topics."""
