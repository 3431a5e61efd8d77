"""The history of sessions, utterances and summaries in a database (PostgreSQL or an embedded SQLite file)."""
