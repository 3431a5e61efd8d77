"""`moodstream bench framework`: Starlette or FastAPI for the gateway, decided by what a frame costs the server.

The same WebSocket handler (accept, read binary frames until the client leaves) runs under uvicorn once as a plain
Starlette route and once as a FastAPI route; N clients send 20 ms frames at real time. Measured on the server
process only: CPU per session (% of one core) and RSS. No Kafka: the difference between the frameworks is all that
varies. FastAPI is not a dependency of moodstream; install it (`pip install fastapi`) to run this.
"""

# No `from __future__ import annotations`: FastAPI must resolve the WebSocket annotation of a local function.

import asyncio
import json
import subprocess
import sys
import time

import psutil
import websockets

from moodstream.broker.embedded import free_port
from moodstream.cli.bench import report
from moodstream.cli.bench.processes import stop, wait_http


def build_app(framework: str):  # returns an ASGI app
    async def drain(ws) -> None:
        await ws.accept()
        frames = 0
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                frames += 1

    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    async def ok(_request: Request) -> PlainTextResponse:  # annotated, or FastAPI takes it for a query parameter
        return PlainTextResponse("ok")

    if framework == "fastapi":
        from fastapi import FastAPI, WebSocket

        app = FastAPI()

        @app.websocket("/ws")
        async def ws_route(ws: WebSocket) -> None:
            await drain(ws)

        app.add_api_route("/healthz", ok)
        return app
    from starlette.applications import Starlette
    from starlette.routing import Route, WebSocketRoute

    return Starlette(routes=[WebSocketRoute("/ws", drain), Route("/healthz", ok)])


def serve(framework: str, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(framework), host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning")


async def clients(url: str, sessions: int, seconds: float) -> None:
    frame = bytes(640)

    async def one() -> None:
        async with websockets.connect(url) as ws:
            start = time.monotonic()
            for index in range(int(seconds * 50)):
                delay = start + index * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(frame)

    await asyncio.gather(*(one() for _ in range(sessions)))


def measure(framework: str, sessions: int, seconds: float) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moodstream.cli.bench.framework", "--serve", framework, str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", [server], 30)
        process = psutil.Process(server.pid)
        before = process.cpu_times()
        started = time.monotonic()
        asyncio.run(clients(f"ws://127.0.0.1:{port}/ws", sessions, seconds))
        wall = time.monotonic() - started
        after = process.cpu_times()
        cpu_s = (after.user + after.system) - (before.user + before.system)
        return {
            "framework": framework,
            "cpu_pct_per_session": round(100 * cpu_s / wall / sessions, 3),
            "us_per_frame": round(1e6 * cpu_s / (sessions * seconds * 50), 1),
            "rss_mb": round(process.memory_info().rss / 2**20, 1),
        }
    finally:
        stop([server])


def run(sessions: int, seconds: float, rounds: int, as_json: bool) -> None:
    results: dict[str, list[dict]] = {"starlette": [], "fastapi": []}
    for _ in range(rounds):  # interleaved, so drift on the machine hits both alike
        for framework in results:
            results[framework].append(measure(framework, sessions, seconds))
            if not as_json:
                print(json.dumps(results[framework][-1]), flush=True)
    summary: dict[str, object] = {"sessions": sessions, "seconds": seconds, "rounds": rounds}
    for framework, runs in results.items():
        summary[f"{framework}_cpu_pct_per_session"] = round(min(r["cpu_pct_per_session"] for r in runs), 3)
        summary[f"{framework}_us_per_frame"] = min(r["us_per_frame"] for r in runs)
        summary[f"{framework}_rss_mb"] = min(r["rss_mb"] for r in runs)
    report(summary, as_json)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
