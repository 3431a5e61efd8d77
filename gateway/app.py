"""The gateway's HTTP and WebSocket app (Starlette on uvicorn: a little cheaper per frame than FastAPI and
6 MB smaller, measured by `moodstream bench framework`; see README).

``/ws/analyze``: optional JSON ``start`` message, then binary int16 PCM frames; results come back as JSON.
Errors are documented in schemas.errors; none of them affects another session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import time
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from moodstream.gateway import metrics
from moodstream.gateway.auth import Authenticator, ResumeTokens
from moodstream.gateway.bridge import KafkaBridge
from moodstream.gateway.placement import choose_partition, new_session_id
from moodstream.schemas import encode
from moodstream.schemas import errors as E
from moodstream.schemas.audio import SAMPLE_RATE
from moodstream.schemas.records import (
    AcousticScore,
    AudioFrame,
    FusedResult,
    PartialResult,
    Record,
    SessionControl,
    SessionEnded,
    SessionOptions,
)
from moodstream.schemas.topics import AUDIO, partition_for
from moodstream.schemas.websocket import (
    CLIENT_MESSAGE,
    EndMessage,
    ErrorMessage,
    PingMessage,
    Pong,
    SessionStarted,
    StartMessage,
)
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from moodstream.settings import Settings

log = logging.getLogger("moodstream.gateway")
STATIC = Path(__file__).parent / "static"


def now_ms() -> float:
    return time.time() * 1000.0


PROVISIONAL = (PartialResult, AcousticScore)
"""Events about an utterance still open: once its final result is sent, any that arrive late are dropped."""

RECENT_IDENTITIES = 4096
"""Events a session remembers sending, for dropping replays (levels, scores, partials: a few a second)."""


class RecentIdentities:
    """A set that keeps only its `size` latest members: a session's memory of what it sent stays bounded."""

    def __init__(self, size: int) -> None:
        self._order: collections.deque[tuple[object, ...]] = collections.deque()
        self._members: set[tuple[object, ...]] = set()
        self.size = size

    def __contains__(self, identity: object) -> bool:
        return identity in self._members

    def add(self, identity: tuple[object, ...]) -> None:
        if identity in self._members:
            return
        self._order.append(identity)
        self._members.add(identity)
        while len(self._order) > self.size:
            self._members.discard(self._order.popleft())

    def discard(self, identity: tuple[object, ...]) -> None:
        self._members.discard(identity)  # its place in the order goes when it would have


class SessionClosed(Exception):
    """Raised inside a session to close the socket with a documented error."""

    def __init__(self, error: E.ErrorCode, detail: str = "") -> None:
        super().__init__(detail or error.meaning)
        self.error = error
        self.detail = detail or error.meaning


class ClientSession:
    """One WebSocket session: client audio to the audio topic, the session's events back to the client."""

    def __init__(self, ws: WebSocket, bridge: KafkaBridge, settings: Settings, resume: ResumeTokens) -> None:
        self.ws = ws
        self.bridge = bridge
        self.settings = settings
        self.resume = resume
        self.session_id = uuid.uuid4().hex
        self.seq = 0
        self.next_sample = 0
        self.connection_samples = 0
        self.started_at = time.monotonic()
        self.outbox: asyncio.Queue[Record] = asyncio.Queue(maxsize=10_000)
        self.ending = False
        self.end_reason: str | None = None
        self.ended_record: SessionEnded | None = None
        self.delivered = RecentIdentities(RECENT_IDENTITIES)
        """Identities of the events sent lately: a worker's replay repeats only recent ones."""
        self.final_utterances: set[int] = set()
        """Utterances whose final result the client has: later results of them are repeats or superseded."""
        self.recording: wave.Wave_write | None = None
        self.batch: list[bytes] = []
        self.batch_samples = 0
        self.batch_received_at_ms = 0.0
        self.batch_due = 0.0
        """Monotonic time by which the held frames must be published."""

    # wire helpers ---------------------------------------------------------------------------------------------------
    async def send_json(self, message: dict) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.ws.send_text(json.dumps(message, separators=(",", ":")))
            metrics.EVENTS_SENT.labels(message.get("type", "?")).inc()

    async def send_error(self, error: E.ErrorCode, detail: str = "", fatal: bool = False) -> None:
        await self.send_json(ErrorMessage(code=error.code, message=detail or error.meaning, fatal=fatal).model_dump())

    def produce_control(self, action: str, reason: str = "client", options: SessionOptions | None = None) -> None:
        record = SessionControl(
            session_id=self.session_id,
            action=action,  # type: ignore[arg-type]
            next_seq=self.seq,
            options=options or SessionOptions(),
            reason=reason,  # type: ignore[arg-type]
            at_ms=now_ms(),
        )
        self.bridge.produce(self.settings.generations.name(AUDIO), self.session_id, encode(record))

    # lifecycle ------------------------------------------------------------------------------------------------------
    async def run(self, first: dict) -> None:
        options = SessionOptions()
        pending_frame: bytes | None = None
        resumed = False
        if first.get("type") == "websocket.receive" and first.get("text") is not None:
            start = self.parse_text(first["text"])
            if isinstance(start, str) and '"start"' in first["text"]:  # a start message with an invalid field
                raise SessionClosed(E.BAD_START, start)
            if not isinstance(start, StartMessage):
                raise SessionClosed(E.BAD_START, 'the first text message must be {"type":"start",...}')
            if start.sample_rate != SAMPLE_RATE:
                raise SessionClosed(E.BAD_START, f"sample_rate must be {SAMPLE_RATE}, got {start.sample_rate}")
            options = start.options
            resumed = start.resume_token is not None
            if resumed:
                self.resume_from(start)
        elif first.get("bytes") is not None:
            pending_frame = first["bytes"]
        self.bridge.subscribe(self.session_id, self.on_event, replay=resumed)
        try:
            self.produce_control("start", options=options)
            await self.send_json(
                SessionStarted(
                    session_id=self.session_id,
                    resume_token=self.resume.issue(self.session_id),
                    max_frame_ms=self.settings.max_frame_ms,
                    resumed=resumed,
                ).model_dump()
            )
            sender = asyncio.create_task(self.relay_events(), name=f"relay-{self.session_id}")
            try:
                if pending_frame is not None:
                    await self.on_audio(pending_frame)
                await self.receive_loop()
                await asyncio.wait_for(asyncio.shield(sender), self.settings.session_end_grace_s)
            except TimeoutError:
                log.warning(
                    "session %s: results incomplete after %.0fs grace",
                    self.session_id,
                    self.settings.session_end_grace_s,
                )
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        finally:
            self.bridge.unsubscribe(self.session_id)
            if self.recording is not None:
                self.recording.close()

    def resume_from(self, start: StartMessage) -> None:
        """Continue an earlier session: same id, audio from the client's resend point, no repeated results."""
        session_id = self.resume.verify(start.resume_token or "")
        if session_id is None:
            raise SessionClosed(E.BAD_RESUME)
        self.session_id = session_id
        self.next_sample = start.resume_from_sample
        self.final_utterances.update(start.delivered_utterances)
        metrics.RESUMED.inc()
        log.info("session %s resumed from sample %d", session_id, start.resume_from_sample)

    async def receive_loop(self) -> None:
        """Client → Kafka until the client ends, leaves, idles out or hits the duration limit."""
        last_message_at = time.monotonic()
        while not self.ending:
            now = time.monotonic()
            remaining = self.settings.max_session_s - (now - self.started_at)
            if remaining <= 0:
                await self.send_error(E.MAX_DURATION)
                self.end("max_duration")
                return
            idle_left = self.settings.idle_timeout_s - (now - last_message_at)
            if idle_left <= 0:
                await self.send_error(E.IDLE_TIMEOUT)
                self.end("idle")
                return
            if self.batch and now >= self.batch_due:  # a slow or pausing client: do not sit on its audio
                await self.publish_batch()
            wait = min(idle_left, remaining, self.batch_due - now if self.batch else math.inf)
            try:
                message = await asyncio.wait_for(self.ws.receive(), max(wait, 0.001))
            except TimeoutError:
                continue
            last_message_at = time.monotonic()
            if message["type"] == "websocket.disconnect":
                # The partial utterance is still processed; its result stays on the events topic.
                self.end("disconnect")
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes") is not None:
                await self.on_audio(message["bytes"])
            elif message.get("text") is not None:
                parsed = self.parse_text(message["text"])
                if isinstance(parsed, PingMessage):
                    await self.send_json(Pong().model_dump())
                elif isinstance(parsed, EndMessage):
                    self.end("client")
                elif isinstance(parsed, StartMessage):
                    await self.send_error(E.BAD_MESSAGE, "start is only allowed as the first message")
                else:
                    await self.send_error(E.BAD_MESSAGE, parsed)

    def end(self, reason: str) -> None:
        if not self.ending:
            self.ending = True
            self.end_reason = reason
            held = self.batch_samples
            if held and not self.produce_batch():
                log.warning("session %s: its last %d samples dropped, audio queue full", self.session_id, held)
            self.produce_control("end", reason=reason)

    def parse_text(self, text: str) -> StartMessage | EndMessage | PingMessage | str:
        """A client message, or a string saying why it is not one."""
        try:
            return CLIENT_MESSAGE.validate_json(text)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            return f"bad client message: {first['msg']} at {'.'.join(map(str, first['loc'])) or 'top level'}"

    async def on_audio(self, pcm: bytes) -> None:
        if len(pcm) > self.settings.max_frame_bytes:
            raise SessionClosed(E.FRAME_TOO_LARGE, f"frame of {len(pcm)} bytes exceeds {self.settings.max_frame_bytes}")
        if len(pcm) % 2 or not pcm:
            await self.send_error(E.ODD_FRAME, f"frame of {len(pcm)} bytes dropped: int16 frames have an even size")
            return
        if not self.batch:
            self.batch_received_at_ms = now_ms()
            self.batch_due = time.monotonic() + self.settings.audio_batch_ms / 1000
        self.batch.append(pcm)
        self.batch_samples += len(pcm) // 2
        self.next_sample += len(pcm) // 2
        self.connection_samples += len(pcm) // 2
        metrics.FRAMES.inc()
        metrics.AUDIO_BYTES.inc(len(pcm))
        if self.settings.record_dir:
            self.record(pcm)
        if self.batch_samples * 1000 >= self.settings.audio_batch_ms * SAMPLE_RATE:
            await self.publish_batch()
        await self.throttle()

    def produce_batch(self) -> bool:
        """Publish the held frames as one audio record; False when the producer queue is full (they are dropped and
        the session's sample clock steps back, so later audio follows on without a gap)."""
        pcm = b"".join(self.batch)
        start_sample = self.next_sample - self.batch_samples
        frame = AudioFrame(
            session_id=self.session_id,
            seq=self.seq,
            start_sample=start_sample,
            received_at_ms=self.batch_received_at_ms,
            pcm=pcm,
        )
        self.batch, self.batch_samples = [], 0
        try:
            self.bridge.produce(self.settings.generations.name(AUDIO), self.session_id, encode(frame))
        except BufferError:
            self.next_sample = start_sample
            self.connection_samples -= len(pcm) // 2
            return False
        self.seq += 1
        return True

    async def publish_batch(self) -> None:
        if not self.produce_batch():
            await self.send_error(E.TOO_FAST, "audio dropped: the server's audio queue is full")

    async def throttle(self) -> None:
        """Pause reading when the client is further ahead of real time than the burst allows: TCP backpressure
        then slows the sender to `max_realtime_factor` × real time."""
        factor = self.settings.max_realtime_factor
        allowed_s = (time.monotonic() - self.started_at) * factor + self.settings.burst_s
        ahead_s = self.connection_samples / SAMPLE_RATE - allowed_s
        if ahead_s > 0:
            metrics.THROTTLED_SECONDS.inc(ahead_s / factor)
            await asyncio.sleep(ahead_s / factor)

    def record(self, pcm: bytes) -> None:
        if self.recording is None:
            first_sample = self.next_sample - self.connection_samples
            suffix = f".from{first_sample}" if first_sample else ""  # a resumed connection keeps the earlier file
            path = Path(self.settings.record_dir or ".") / f"{self.session_id}{suffix}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.recording = wave.open(str(path), "wb")
            self.recording.setnchannels(1)
            self.recording.setsampwidth(2)
            self.recording.setframerate(SAMPLE_RATE)
        self.recording.writeframes(pcm)

    # Kafka → client ----------------------------------------------------------------------------------------------
    def on_event(self, record: Record) -> None:
        """Called on the loop by the bridge for each record of this session."""
        try:
            self.outbox.put_nowait(record)
        except asyncio.QueueFull:
            log.error("session %s: outbox full, event dropped", self.session_id)

    async def relay_events(self) -> None:
        """Forward events in order; drop replayed duplicates; return after session.ended and its results."""
        while True:
            record = await self.outbox.get()
            if isinstance(record, PROVISIONAL) and record.utterance_seq in self.final_utterances:
                continue  # the final supersedes an utterance's partials and window scores: never shown after it
            identity = record.identity()
            superseded = isinstance(record, FusedResult) and record.utterance_seq in self.final_utterances
            if identity in self.delivered or superseded:  # a replay after a worker crash: never show it twice
                metrics.DUPLICATES_DROPPED.inc()
                continue
            self.delivered.add(identity)
            if isinstance(record, FusedResult):
                if record.final:
                    self.final_utterances.add(record.utterance_seq)
                if record.final and record.last_frame_received_at_ms:
                    metrics.E2E_SECONDS.observe(max(0.0, now_ms() - record.last_frame_received_at_ms) / 1000)
            if isinstance(record, SessionEnded):
                if record.reason != self.end_reason:  # the end of an earlier connection of a resumed session
                    self.delivered.discard(identity)
                    continue
                self.ended_record = record
            else:
                await self.send_json(record.model_dump(mode="json"))
            if self.ended_record is not None and self.results_complete():
                await self.send_json(self.ended_record.model_dump(mode="json"))
                return

    def results_complete(self) -> bool:
        assert self.ended_record is not None
        if not self.ended_record.awaiting_results:
            return True
        return all(seq in self.final_utterances for seq in range(self.ended_record.utterances))


class Gateway:
    """One gateway process: its Kafka bridge, its open sessions and its HTTP and WebSocket endpoints."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bridge = KafkaBridge(settings)
        self.open_sessions: set[ClientSession] = set()
        self.auth = Authenticator.from_settings(settings)
        self.resume_tokens = ResumeTokens(settings.resume_secret, settings.resume_ttl_s)

    async def watch_broker(self) -> None:
        """Tell open sessions when Kafka becomes unreachable (their audio is buffered, results will stall)."""
        was_ok = True
        while True:
            await asyncio.sleep(0.5)
            ok = self.bridge.broker_ok
            if was_ok and not ok:
                log.warning("broker unreachable: telling %d open sessions", len(self.open_sessions))
                for session in list(self.open_sessions):
                    with contextlib.suppress(Exception):
                        await session.send_error(E.BROKER_UNAVAILABLE, "Kafka is unreachable; audio is buffered")
            was_ok = ok

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.bridge.start(asyncio.get_running_loop())
        watcher = asyncio.create_task(self.watch_broker())
        log.info("gateway %s up on %s:%s", self.settings.instance_id, self.settings.host, self.settings.port)
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.to_thread(self.bridge.stop)

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "instance": self.settings.instance_id})

    async def readyz(self, _request: Request) -> Response:
        checks = self.bridge.readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        refusal = self.auth.check_metrics(request.headers.get("authorization"))
        if refusal:
            return JSONResponse({"error": "unauthorized", "message": refusal}, status_code=401)

        metrics.QUEUE_DEPTH.set(len(self.bridge.producer))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def index(self, _request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    def admit(self, ws: WebSocket) -> None:
        """Raise SessionClosed with the documented error when this connection may not open a session."""
        headers = ws.headers
        refusal = self.auth.check(
            headers.get("authorization"), ws.query_params.get("token"), headers.get("origin"), headers.get("host")
        )
        if refusal:
            raise SessionClosed(E.UNAUTHORIZED, refusal)
        if len(self.open_sessions) >= self.settings.max_sessions:
            limit = self.settings.max_sessions
            raise SessionClosed(E.OVER_CAPACITY, f"this gateway holds its limit of {limit} sessions")
        if not self.bridge.ready:
            raise SessionClosed(E.BROKER_UNAVAILABLE, f"not ready: {self.bridge.readiness()}")

    async def analyze(self, ws: WebSocket) -> None:
        await ws.accept()
        session = ClientSession(ws, self.bridge, self.settings, self.resume_tokens)
        live = (partition_for(s.session_id) for s in self.open_sessions)
        session.session_id = new_session_id(choose_partition(self.bridge.live_workers(), live))
        try:
            self.admit(ws)
            self.open_sessions.add(session)
            metrics.SESSIONS.set(len(self.open_sessions))
            metrics.SESSIONS_TOTAL.inc()
            first = await asyncio.wait_for(ws.receive(), self.settings.idle_timeout_s)
            if first["type"] == "websocket.disconnect":
                return
            await session.run(first)
            await ws.close(1000)
        except SessionClosed as closed:
            await self.refuse(ws, session, closed)
        except (WebSocketDisconnect, TimeoutError):
            pass
        except Exception:
            log.exception("session %s failed", session.session_id)
            metrics.REJECTED.labels(E.INTERNAL.code).inc()
            with contextlib.suppress(Exception):
                await ws.close(E.INTERNAL.close_code or 1011, reason=E.INTERNAL.code)
        finally:
            self.open_sessions.discard(session)
            metrics.SESSIONS.set(len(self.open_sessions))

    async def refuse(self, ws: WebSocket, session: ClientSession, closed: SessionClosed) -> None:
        metrics.REJECTED.labels(closed.error.code).inc()
        if self.bridge.is_subscribed(session.session_id):
            session.end("server")
        with contextlib.suppress(Exception):
            await session.send_error(closed.error, closed.detail, fatal=True)
            await ws.close(closed.error.close_code or 1011, reason=closed.error.code)


SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
"""On every HTTP response: the page runs only its own script, is framed by no one, and files are served as what
they are. The inline styles of the page are allowed; no inline script is."""


class SecurityHeaders:
    """ASGI middleware adding `SECURITY_HEADERS` to HTTP responses (WebSocket traffic passes untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings) -> Starlette:
    gateway = Gateway(settings)
    return Starlette(
        middleware=[Middleware(SecurityHeaders)],
        routes=[
            Route("/", gateway.index),
            Route("/healthz", gateway.healthz),
            Route("/readyz", gateway.readyz),
            Route("/metrics", gateway.metrics_endpoint),
            WebSocketRoute("/ws/analyze", gateway.analyze),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=gateway.lifespan,
    )


def run_gateway(settings: Settings) -> None:
    import uvicorn
    from moodstream.gateway.auth import check_bind

    check_bind(settings.host, Authenticator.from_settings(settings))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        ws="websockets-sansio",
        ws_max_size=max(settings.max_frame_bytes * 4, 65536),
        ws_per_message_deflate=False,  # PCM does not compress; deflating every frame only costs both ends CPU
        lifespan="on",
        access_log=False,
    )
