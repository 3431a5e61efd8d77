"""The text stage's dialogue memory: only earlier words of the same session are context, and it stays bounded."""

from __future__ import annotations

from moodstream.processors.dialogue import DialogueMemory


def test_context_is_the_latest_earlier_utterance_of_the_same_session() -> None:
    memory = DialogueMemory()
    assert memory.context("a", 0) == ""
    memory.remember("a", 0, "Is the flight delayed?")
    memory.remember("b", 0, "Hello.")
    memory.remember("a", 1, "   ")  # nothing said: the earlier words stay the context
    assert memory.context("a", 2) == "Is the flight delayed?"
    memory.remember("a", 2, "It is, by two hours.")
    assert memory.context("a", 3) == "It is, by two hours."
    assert memory.context("a", 2) == ""  # a replay of utterance 2 never gets its own or later words
    memory.remember("a", 1, "late replay")  # older than what is kept: ignored
    assert memory.context("a", 3) == "It is, by two hours."


def test_only_the_most_recently_active_sessions_are_kept() -> None:
    memory = DialogueMemory(max_sessions=2)
    for session in ("a", "b", "c"):
        memory.remember(session, 0, f"words of {session}")
    assert memory.context("a", 1) == "" and memory.context("c", 1) == "words of c"
