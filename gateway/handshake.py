"""uvicorn's HTTP protocol with a deadline on each request's headers.

uvicorn waits for a request's headers for as long as the client takes, so a client sending its WebSocket handshake a
byte a second holds a connection (and a file descriptor) open for good. Here every request, the first from
`connection_made` on and each later one from its first byte, must complete its headers within `deadline_s`, or the
connection is dropped. Tied to uvicorn's httptools protocol: `run_gateway` names it as uvicorn's `http`.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    deadline_s: float = 10.0
    """Seconds a request may take to send its headers."""
    _header_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_deadline(cls, deadline_s: float) -> type[HeaderDeadlineProtocol]:
        return type(cls.__name__, (cls,), {"deadline_s": deadline_s})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.deadline_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
