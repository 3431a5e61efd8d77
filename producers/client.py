"""Async clients for ``/ws/analyze``: ``MoodstreamClient`` (reconnects and resumes) and the one-shot ``stream_pcm``.

    async with MoodstreamClient("ws://127.0.0.1:8000/ws/analyze") as client:
        sender = asyncio.create_task(client.stream(pcm))
        async for message in client.messages():
            print(message["type"], message.get("text"))

A dropped connection (gateway restart, network) is resumed on any gateway instance that shares the resume secret:
the client resends its last ``replay_s`` of audio (the server skips what it already has) and names the utterances
whose final result it holds, so no utterance is lost or shown twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import websockets

from moodstream.producers.audio import frames
from moodstream.schemas.audio import SAMPLE_RATE

DEFAULT_URL = "ws://127.0.0.1:8000/ws/analyze"
log = logging.getLogger("moodstream.client")

# Close codes after which the same session is worth resuming (going away, abnormal, server error, restart, later).
RESUMABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


@dataclass
class ClientOptions:
    """How a MoodstreamClient connects, sends and recovers."""

    frame_ms: int = 20
    """Length of each binary frame sent."""
    replay_s: float = 5.0
    """Audio kept to resend after a reconnect (what the old connection may not have delivered)."""
    max_reconnects: int = 30
    """Reconnect attempts in a row before giving up with a fatal ``disconnected`` error."""
    max_resumes_after_end: int = 5
    """Resumes after ``end`` (each waits for the last results again) before giving up with ``disconnected``."""
    rate_margin: float = 0.9
    """Share of the gateway's admitted rate (``session.started``) the client sends at, at most."""
    backoff_s: float = 0.25
    """First wait before reconnecting; doubles on each failed attempt up to ``backoff_max_s``."""
    backoff_max_s: float = 4.0
    """Longest wait between reconnect attempts."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra HTTP headers for the WebSocket handshake (for example ``Authorization``)."""
    session_options: dict = field(default_factory=dict)
    """The start message's ``options`` (see schemas.records.SessionOptions)."""


class SessionFailed(Exception):
    """The session ended with a fatal error that reconnecting cannot fix."""


class MoodstreamClient:
    """One analysis session over one or more WebSocket connections."""

    def __init__(self, url: str = DEFAULT_URL, options: ClientOptions | None = None) -> None:
        self.url = url
        self.options = options or ClientOptions()
        self.session_id: str | None = None
        self.channels = int(self.options.session_options.get("channels", 1))
        """Channels interleaved in the PCM this session sends (2: a call)."""
        self.resumes = 0
        self.duplicates_dropped = 0
        """Results that arrived twice over the wire and were not passed on (the gateway should leave none)."""
        self._token: str | None = None
        self._ws: websockets.ClientConnection | None = None
        self._sent_samples = 0
        self._replay: deque[tuple[int, bytes]] = deque()
        self._replay_samples = 0
        self._finals: set[int] = set()
        self._seen_results: set[tuple[int, int]] = set()
        self._partial_revisions: dict[int, int] = {}
        """utterance seq → the newest partial revision yielded (dropped once the utterance's final is in)."""
        self._inbox: asyncio.Queue[dict | None] = asyncio.Queue()
        self._ended_sent = False
        self._done = False
        self._reader: asyncio.Task[None] | None = None
        self._resumer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._covered_ms = 0.0
        """End of the latest final result's audio: what the session has judged so far."""
        self._resumes_after_end = 0
        self._collect_only = False
        """The server has all the audio and the end (it said `results_late`): a resume only collects results."""
        self._admitted = (math.inf, math.inf)
        """The gateway's admitted rate (× real time) and burst (s), from session.started."""
        self._connection_started = 0.0
        self._connection_samples = 0

    async def __aenter__(self) -> MoodstreamClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # connection ------------------------------------------------------------------------------------------------
    async def connect(self) -> dict:
        """Open the session (or resume it when it has a token); returns the ``session.started`` message."""
        start: dict = {"type": "start", "sample_rate": SAMPLE_RATE, "options": self.options.session_options}
        if self._token:
            start |= {
                "resume_token": self._token,
                "resume_from_sample": self._sent_samples
                if self._collect_only or not self._replay
                else self._replay[0][0],
                "delivered_utterances": sorted(self._finals),
            }
        ws = await websockets.connect(self.url, max_size=2**22, additional_headers=self.options.headers)
        try:
            await ws.send(json.dumps(start))
            started = json.loads(await ws.recv())
        except websockets.ConnectionClosed as closed:
            raise self._closed_error(closed) from closed
        if started.get("type") != "session.started":
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5.0)  # the close that follows a refusal carries its code
            await ws.close()
            why = f"closed {ws.close_code}: {started.get('code')}: {started.get('message')}"
            raise OSError(why) if ws.close_code in RESUMABLE_CLOSE_CODES else SessionFailed(why)
        self._ws = ws
        self.session_id = started["session_id"]
        self._token = started["resume_token"]
        self._admitted = (started.get("max_realtime_factor", math.inf), started.get("burst_s", math.inf))
        self._connection_started, self._connection_samples = time.monotonic(), 0
        self._generation += 1
        self._inbox.put_nowait(started)
        self._reader = asyncio.create_task(self._read(ws, self._generation))
        return started

    async def close(self) -> None:
        self._done = True
        for task in (self._reader, self._resumer):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws:
            await self._ws.close()

    # sending ---------------------------------------------------------------------------------------------------
    async def send_audio(self, pcm: bytes) -> None:
        """Send int16 16 kHz mono PCM, split into frames, never faster than the gateway admits; waits out a reconnect
        if one is under way."""
        for frame in frames(pcm, self.options.frame_ms, channels=self.channels):
            await self._within_admitted_rate()
            self._keep(frame)
            await self._send(frame)
            self._connection_samples += self._samples(frame)

    async def _within_admitted_rate(self) -> None:
        """Wait until the next frame keeps this connection under the gateway's admitted rate (with a margin): a
        client never ahead of it is never warned or closed `too_fast`, and its keepalive is never starved."""
        factor, burst_s = self._admitted
        if math.isinf(factor):
            return
        margin = self.options.rate_margin
        sent_s = self._connection_samples / SAMPLE_RATE
        due = self._connection_started + (sent_s - burst_s * margin) / (factor * margin)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def stream(self, pcm: bytes, realtime: bool = True, end: bool = True) -> None:
        """Send PCM paced at real time (or as fast as the server admits), then ``end`` the session."""
        started = time.monotonic()
        for index, frame in enumerate(frames(pcm, self.options.frame_ms, channels=self.channels)):
            if realtime:
                delay = started + index * self.options.frame_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.send_audio(frame)
        if end:
            await self.end()

    async def end(self) -> None:
        """Ask the server to finish the open utterance, send its result and close."""
        self._ended_sent = True
        await self._send(json.dumps({"type": "end"}))

    async def _send(self, data: bytes | str) -> None:
        # One lock for sending and resuming keeps every sample sent once per connection, in order: a frame that
        # fails here is already in the replay buffer, and `end` is re-sent by the resume.
        async with self._lock:
            if self._done:
                return
            generation = self._generation
            try:
                if self._ws is None:
                    raise websockets.ConnectionClosedError(None, None)
                await self._ws.send(data)
            except websockets.ConnectionClosed:
                await self._resume_locked(generation)

    def _keep(self, frame: bytes) -> None:
        self._replay.append((self._sent_samples, frame))
        self._sent_samples += self._samples(frame)
        self._replay_samples += self._samples(frame)
        while self._replay_samples - self._samples(self._replay[0][1]) >= self.options.replay_s * SAMPLE_RATE:
            self._replay_samples -= self._samples(self._replay.popleft()[1])

    def _samples(self, frame: bytes) -> int:
        """Sample frames (per channel) in `frame`: the unit of the session's sample clock."""
        return len(frame) // (2 * self.channels)

    # receiving -------------------------------------------------------------------------------------------------
    async def messages(self) -> AsyncIterator[dict]:
        """Every server message of the session, without duplicates, until ``session.ended`` or a fatal error."""
        while True:
            message = await self._inbox.get()
            if message is None:
                return
            yield message
            if message["type"] == "session.ended":
                return
            if message["type"] == "error" and message.get("fatal") and message.get("code") == "disconnected":
                return

    def _fresh_partial(self, message: dict) -> bool:
        """A partial is shown only while its utterance has no final and only if it is newer than the last shown."""
        seq, revision = message["utterance_seq"], message["revision"]
        if seq in self._finals or self._partial_revisions.get(seq, 0) >= revision:
            return False
        self._partial_revisions[seq] = revision
        return True

    async def _read(self, ws: websockets.ClientConnection, generation: int) -> None:
        fatal: dict | None = None
        try:
            async for raw in ws:
                message = json.loads(raw)
                if not self._is_new(message):
                    continue
                if message.get("type") == "error" and message.get("fatal"):
                    fatal = message  # passed on once the close code says whether the session can go on
                    continue
                self._inbox.put_nowait(message)
                if message.get("type") == "session.ended":
                    self._done = True
                    return
        except websockets.ConnectionClosed as closed:  # what the close means is decided below, by its code
            log.info("connection closed (%s): %s", ws.close_code, closed)
        if self._done:
            return
        if fatal is not None and ws.close_code not in RESUMABLE_CLOSE_CODES:
            self._done = True
            self._inbox.put_nowait(fatal | {"message": f"{fatal['message']} ({self.unfinished()})"})
            self._inbox.put_nowait(None)
            return
        if fatal is not None:  # the session goes on over a new connection: say why it was closed, not as fatal
            self._inbox.put_nowait(fatal | {"fatal": False})
            self._collect_only = self._collect_only or fatal.get("code") == "results_late"
        # Every other close, a normal one without session.ended included, is resumed: the session is over only once
        # session.ended says so, or a resume is refused.
        if self._ended_sent:
            self._resumes_after_end += 1
            if self._resumes_after_end > self.options.max_resumes_after_end:
                self._fail(f"no session.ended after {self.options.max_resumes_after_end} resumes")
                return
        self._resumer = asyncio.create_task(self._resume(generation))

    def _is_new(self, message: dict) -> bool:
        """False for a repeat or a superseded partial; notes final results."""
        if message.get("type") == "partial":
            return self._fresh_partial(message)
        if message.get("type") == "utterance":
            key = (message["utterance_seq"], message.get("revision", 1))
            if key in self._seen_results:
                self.duplicates_dropped += 1
                return False
            self._seen_results.add(key)
            if message.get("final"):
                self._finals.add(message["utterance_seq"])
                self._partial_revisions.pop(message["utterance_seq"], None)
                self._covered_ms = max(self._covered_ms, message.get("end_ms", 0.0))
        return True

    def unfinished(self) -> str:
        """Which audio has no final result yet, in words."""
        sent_s = self._sent_samples / SAMPLE_RATE
        return (f"{len(self._finals)} final results received; the audio after {self._covered_ms / 1000:.1f} s "
                f"(of {sent_s:.1f} s sent) may have none")  # fmt: skip

    async def _resume(self, generation: int) -> None:
        async with self._lock:
            await self._resume_locked(generation)

    async def _resume_locked(self, generation: int) -> None:
        """Reconnect and resume, once per lost connection, resending the replay buffer (and ``end``)."""
        if self._done or generation != self._generation:
            return
        delay = self.options.backoff_s
        for attempt in range(1, self.options.max_reconnects + 1):
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.backoff_max_s)
            try:
                await self.connect()
                assert self._ws is not None
                for _start, frame in [] if self._collect_only else list(self._replay):
                    await self._ws.send(frame)  # counted against the admitted rate like any audio
                    self._connection_samples += self._samples(frame)
                if self._ended_sent:
                    await self._ws.send(json.dumps({"type": "end"}))
            except SessionFailed as exc:
                self._fail(str(exc))
                return
            except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError) as exc:
                log.info("resume attempt %d failed: %s", attempt, exc)
                continue
            self.resumes += 1
            return
        self._fail(f"could not reconnect after {self.options.max_reconnects} attempts")

    def _fail(self, why: str) -> None:
        self._done = True
        message = f"{why}: {self.unfinished()}"
        self._inbox.put_nowait({"type": "error", "code": "disconnected", "message": message, "fatal": True})

    @staticmethod
    def _closed_error(closed: websockets.ConnectionClosed) -> Exception:
        frame = closed.rcvd
        if frame is not None and frame.code not in RESUMABLE_CLOSE_CODES:
            return SessionFailed(f"closed {frame.code}: {frame.reason}")
        return OSError(f"closed {frame.code if frame else 'abnormally'}")


async def stream_pcm(
    url: str,
    pcm: bytes,
    *,
    frame_ms: int = 20,
    realtime: bool = True,
    options: dict | None = None,
    on_message: Callable[[dict], None] | None = None,
    headers: dict[str, str] | None = None,
) -> list[dict]:
    """Stream PCM over one connection as binary frames, send ``end``, return every message until the server closes.

    No reconnects: tests and tools use it to see exactly what one connection gets (MoodstreamClient resumes).
    """
    messages: list[dict] = []
    async with websockets.connect(url, max_size=2**22, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": SAMPLE_RATE, "options": options or {}}))

        async def receive() -> None:
            async for raw in ws:
                message = json.loads(raw)
                messages.append(message)
                if on_message:
                    on_message(message)

        receiver = asyncio.create_task(receive())
        started = time.monotonic()
        for index, frame in enumerate(frames(pcm, frame_ms, channels=int((options or {}).get("channels", 1)))):
            if realtime:
                delay = started + index * frame_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(frame)
        await ws.send(json.dumps({"type": "end"}))
        try:
            await receiver
        except websockets.ConnectionClosed as closed:  # the messages so far are the answer; say how it ended
            log.info("stream_pcm: connection closed (%s)", closed)
    return messages
