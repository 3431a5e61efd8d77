"""Clients that produce audio: file and microphone streamers, the client library, load generators."""
