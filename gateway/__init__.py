"""The WebSocket ↔ Kafka gateway."""
