"""A TCP proxy that can take the broker away and give it back, for `moodstream bench faults`.

The embedded broker keeps its log in memory, so stopping its process would also wipe every topic and committed
offset: that is not what a Kafka restart looks like (a real broker keeps its log on disk). Every client instead
reaches the broker through this proxy, and tansu advertises the proxy's address, so "down" (open connections reset,
new ones refused) and "up" again is, to our processes, a broker that stopped and came back with its data.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection

from moodstream.broker.embedded import free_port


class BrokerOutage:
    """Proxy ``listen_port`` → ``127.0.0.1:target_port`` in a child process, with `down()` and `up()`."""

    def __init__(self, target_port: int, listen_port: int = 0) -> None:
        self.target_port = target_port
        self.listen_port = listen_port or free_port()
        self._commands: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    def start(self) -> BrokerOutage:
        ours, theirs = multiprocessing.Pipe()
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=_serve, args=(self.listen_port, self.target_port, theirs), daemon=True)
        self._process.start()
        self._commands = ours
        self._call("ping")
        return self

    def down(self) -> None:
        """Reset every open connection and refuse new ones."""
        self._call("down")

    def up(self) -> None:
        """Accept connections again."""
        self._call("up")

    def stop(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._call("stop")
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
        self._process = None

    def _call(self, command: str, timeout_s: float = 10.0) -> None:
        assert self._commands is not None, "start() first"
        self._commands.send(command)
        if not self._commands.poll(timeout_s):
            raise TimeoutError(f"proxy did not answer {command!r}")
        self._commands.recv()


def _serve(listen_port: int, target_port: int, commands: Connection) -> None:
    asyncio.run(_proxy(listen_port, target_port, commands))


async def _proxy(listen_port: int, target_port: int, commands: Connection) -> None:
    open_pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        pair = (client_writer, broker_writer)
        open_pairs.add(pair)
        try:
            await asyncio.gather(pipe(client_reader, broker_writer), pipe(broker_reader, client_writer))
        finally:
            open_pairs.discard(pair)

    async def listen() -> asyncio.Server:
        return await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)

    server: asyncio.Server | None = await listen()
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, commands.recv)
        if command == "down" and server is not None:
            server.close()
            server = None
            for pair in list(open_pairs):
                for writer in pair:
                    writer.transport.abort()
        elif command == "up" and server is None:
            server = await listen()
        commands.send("ok")
        if command == "stop":
            return
