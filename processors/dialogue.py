"""What each session said last, so the text model can read an utterance within its conversation.

Pure: no Kafka. The text reader (`text_reader.py`) asks for an utterance's context before scoring it and remembers its
transcript after. Only an utterance of the same session that started earlier is ever context (so a replayed or late
transcript never gets a later one as its context); in a call that is the conversation: either party's last line.
Bounded: the `max_sessions` most recently active sessions are kept; a session forgotten (or taken over by another
worker) is scored without context until it speaks again, which the model is trained for.
"""

from __future__ import annotations

import collections


class DialogueMemory:
    def __init__(self, max_sessions: int = 10_000) -> None:
        self.max_sessions = max_sessions
        self._last: collections.OrderedDict[str, tuple[float, str]] = collections.OrderedDict()
        """session id → the start (session ms) and words of its latest remembered utterance."""

    def context(self, session_id: str, start_ms: float) -> str:
        """The latest remembered transcript of the session that started before `start_ms` ("" if none)."""
        started, text = self._last.get(session_id, (-1.0, ""))
        return text if started < start_ms else ""

    def remember(self, session_id: str, start_ms: float, text: str) -> None:
        """Keep `text` (said from `start_ms` on) as the session's latest words unless it is empty or started no later
        than what is kept."""
        if not text.strip() or self._last.get(session_id, (-1.0, ""))[0] >= start_ms:
            return
        self._last[session_id] = (start_ms, text.strip())
        self._last.move_to_end(session_id)
        while len(self._last) > self.max_sessions:
            self._last.popitem(last=False)
