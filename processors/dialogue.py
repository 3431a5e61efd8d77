"""What each session said last, so the text model can read an utterance within its conversation.

Pure: no Kafka. The text reader (`text_reader.py`) asks for an utterance's context before scoring it and remembers its
transcript after. Only an earlier utterance of the same session is ever context, so a replayed or late transcript never
gets a later one as its context. Bounded: the `max_sessions` most recently active sessions are kept; a session
forgotten (or taken over by another worker) is scored without context until it speaks again, which the model is
trained for.
"""

from __future__ import annotations

import collections


class DialogueMemory:
    def __init__(self, max_sessions: int = 10_000) -> None:
        self.max_sessions = max_sessions
        self._last: collections.OrderedDict[str, tuple[int, str]] = collections.OrderedDict()

    def context(self, session_id: str, utterance_seq: int) -> str:
        """The latest remembered transcript of the session said before `utterance_seq` ("" if none)."""
        seq, text = self._last.get(session_id, (-1, ""))
        return text if seq < utterance_seq else ""

    def remember(self, session_id: str, utterance_seq: int, text: str) -> None:
        """Keep `text` as the session's latest words unless it is empty or older than what is kept."""
        if not text.strip() or self._last.get(session_id, (-1, ""))[0] >= utterance_seq:
            return
        self._last[session_id] = (utterance_seq, text.strip())
        self._last.move_to_end(session_id)
        while len(self._last) > self.max_sessions:
            self._last.popitem(last=False)
