"""`moodstream stream`: a file or the microphone to the gateway, with live progress and results in the terminal."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from moodstream.producers.client import ClientOptions, MoodstreamClient
from moodstream.schemas.audio import SAMPLE_RATE

COLOURS = {"negative": "red", "neutral": "grey50", "positive": "green"}


def describe(message: dict) -> str | None:
    """One rich-markup line for the messages a person wants to see (None for the rest)."""
    kind = message.get("type")
    if kind == "utterance" and message.get("final"):
        label = message["fused_label"]
        start, end = message["start_ms"] / 1000, message["end_ms"] / 1000
        parts = [f"[bold]{start:6.1f}–{end:.1f} s[/]", f"[{COLOURS[label]}]{label:>8} {message['fused_score']:+.2f}[/]"]
        for name in ("text_sentiment", "audio_sentiment"):
            scores = message.get(name)
            if scores:
                best = max(scores, key=scores.get)
                parts.append(f"[dim]{name.split('_')[0]} {best[:3]} {scores[best]:.2f}[/]")
        if message.get("arousal") is not None:
            parts.append(f"[dim]arousal {message['arousal']:.2f}[/]")
        emotion = message.get("emotion_label")
        if emotion and emotion != "neutral":  # an emotional voice: which emotion, and how sure
            parts.append(f"[{COLOURS['negative' if emotion in ('angry', 'sad') else 'positive']}]{emotion} "
                         f"{message['emotion'][emotion]:.2f}[/]")  # fmt: skip
        text = message.get("text") or "[dim](no words)[/]"
        who = f"[bold cyan]{message['role']:>10}[/]  " if message.get("role") else ""
        return who + "  ".join(parts) + f"  {text}"
    if kind == "error":
        return f"[{'bold red' if message.get('fatal') else 'yellow'}]error {message['code']}: {message['message']}[/]"
    if kind == "session.ended":
        counts = message.get("channel_utterances")
        per_channel = f" ({' + '.join(map(str, counts))} by channel)" if counts else ""
        ended = f"[bold]session ended[/] ({message['reason']}): {message['utterances']} utterances{per_channel}"
        return "\n".join([ended, *summary_lines(message.get("summary"))])
    if kind == "session.started":
        resumed = " (resumed)" if message.get("resumed") else ""
        return f"[dim]session {message['session_id']}{resumed}[/]"
    return None


def summary_lines(summary: dict | None) -> list[str]:
    """One line per party of a session's summary (none without one)."""
    if not summary:
        return []
    lines = []
    for party in summary["parties"]:
        if not party["utterances"]:
            continue
        who = party["role"] or "speaker"
        change = party["score_change"]
        moved = f", first → last quarter {change:+.2f}" if change is not None else ""
        lines.append(f"  [bold]{who}[/]: {party['utterances']} utterances, {party['talk_ms'] / 1000:.1f} s, "
                     f"mean {party['mean_score']:+.2f}, {party['negative_share']:.0%} negative{moved}")  # fmt: skip
        if (low := party["most_negative"]) and low["fused_score"] < 0:
            lines.append(f"    most negative at {low['start_ms'] / 1000:.1f} s ({low['fused_score']:+.2f}): "
                         f"{low['text'] or '(no words)'}")  # fmt: skip
    lines.append(f"  silence {summary['silence_share']:.0%} of the session")
    return lines


def caption(partial: dict) -> str:
    """The live line for a partial: its words so far (the end kept when long) and their leaning."""
    scores = partial["text_sentiment"]
    best = max(scores, key=scores.get)
    words = partial["text"] if len(partial["text"]) <= 70 else "…" + partial["text"][-69:]
    who = f"{partial['role']}: " if partial.get("role") else ""
    return f"… {who}{words}  [{COLOURS[best]}]{best[:3]} {scores[best]:.2f}[/]"


async def microphone_frames(frame_ms: int) -> AsyncIterator[bytes]:
    """16 kHz mono int16 frames from the default input device (needs the `mic` extra and PortAudio)."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise SystemExit(
            f"--mic needs sounddevice and PortAudio: pip install 'moodstream[mic]'; apt install libportaudio2 ({exc})"
        ) from exc
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=500)

    def captured(data, _frames, _time, _status) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

    try:
        stream = sounddevice.RawInputStream(
            samplerate=SAMPLE_RATE,
            channels=1,
            dtype="int16",
            blocksize=SAMPLE_RATE * frame_ms // 1000,
            callback=captured,
        )
    except Exception as exc:
        raise SystemExit(f"no usable microphone: {exc}") from exc
    with stream:
        while True:
            yield await queue.get()


def progress_bar(console: Console, total_s: float | None) -> tuple[Progress, TaskID]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.fields[total_label]} s  {task.fields[results]} results"),
        TimeElapsedColumn(),
        TextColumn("[italic]{task.fields[caption]}"),  # the open utterance's words so far, replaced by its final
        console=console,
        transient=True,
    )
    task = progress.add_task(
        "streaming" if total_s is not None else "listening (Ctrl-C to finish)",
        total=total_s,
        total_label=f"{total_s:.1f}" if total_s else "∞",
        results=0,
        caption="",
    )
    return progress, task


async def send_audio(
    client: MoodstreamClient, pcm: bytes | None, fast: bool, frame_ms: int, progress: Progress, task: TaskID
) -> None:
    """Send `pcm` (real time unless `fast`) or the microphone until cancelled, then end the session."""
    frame_bytes = 2 * client.channels
    if pcm is not None:
        step = SAMPLE_RATE * frame_bytes // 2  # report progress every half second of audio
        for offset in range(0, len(pcm), step):
            await client.stream(pcm[offset : offset + step], realtime=not fast, end=False)
            progress.update(task, completed=min(offset + step, len(pcm)) / frame_bytes / SAMPLE_RATE)
        await client.end()
        return
    sent = 0
    try:
        async for frame in microphone_frames(frame_ms):
            await client.send_audio(frame)
            sent += len(frame)
            progress.update(task, completed=sent / frame_bytes / SAMPLE_RATE)
    finally:
        await client.end()


async def show_messages(client: MoodstreamClient, out: IO[str] | None, progress: Progress, task: TaskID) -> int:
    """Print each message worth a line, record all of them to `out`; 0 once session.ended came, else 1 (a fatal
    error, or the messages stopped without it: never end as if complete when the session is not)."""
    status = results = 0
    ended = False
    async for message in client.messages():
        ended = ended or message.get("type") == "session.ended"
        if out:
            out.write(json.dumps(message) + "\n")
        line = describe(message)
        if line:
            progress.console.print(line, highlight=False)
        if message.get("type") == "partial":
            progress.update(task, caption=caption(message))
        if message.get("type") == "utterance" and message.get("final"):
            results += 1
            progress.update(task, results=results, caption="")
        if message.get("type") == "error" and message.get("fatal"):
            status = 1
    if not ended and status == 0:
        progress.console.print(f"[bold red]the session ended without session.ended: {client.unfinished()}[/]")
    return status if ended else 1


@dataclass(frozen=True)
class StreamRequest:
    """What `moodstream stream` was asked to do."""

    file: Path | None
    """The audio file; None with `mic`."""
    mic: bool
    """Stream the default microphone."""
    url: str
    """The gateway's WebSocket."""
    fast: bool
    """Send as fast as the server admits instead of real time."""
    out: Path | None
    """Write every server message here as JSONL."""
    frame_ms: int
    """Frame length sent."""
    token: str | None
    """API key or token."""
    roles: str | None = None
    """A call's party names, comma-separated (default left,right)."""
    mono: bool = False
    """Mix a stereo file down instead of streaming it as a call."""


async def stream_session(
    request: StreamRequest, pcm: bytes | None, session_options: dict, out: IO[str] | None, console: Console
) -> int:
    """Stream `pcm` (or the microphone when None) and show results; returns the exit status."""
    headers = {"Authorization": f"Bearer {request.token}"} if request.token else {}
    options = ClientOptions(frame_ms=request.frame_ms, headers=headers, session_options=session_options)
    client = MoodstreamClient(request.url, options)
    try:
        await client.connect()
    except Exception as exc:  # noqa: BLE001 - refused, unreachable, bad credentials: say so and exit 1
        console.print(f"[bold red]could not start a session at {request.url}: {exc}[/]")
        return 1
    total_s = len(pcm) / 2 / client.channels / SAMPLE_RATE if pcm is not None else None
    progress, task = progress_bar(console, total_s)
    sender = asyncio.create_task(send_audio(client, pcm, request.fast, request.frame_ms, progress, task))
    if pcm is None:  # Ctrl-C stops the microphone; the session then ends normally with its last results
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, sender.cancel)
    with progress:
        try:
            return await show_messages(client, out, progress, task)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await client.close()


def run(request: StreamRequest) -> int:
    from moodstream.producers.audio import load_speech

    console = Console(stderr=False, highlight=False)
    if request.mic == (request.file is not None):
        console.print("[red]give a FILE or --mic (not both)[/]")
        return 2
    pcm, channels = load_speech(request.file, request.mono) if request.file is not None else (None, 1)
    if request.roles and channels != 2:
        console.print("[red]--roles names the channels of a stereo file streamed as a call[/]")
        return 2
    options: dict = {"channels": 2} if channels == 2 else {}
    if request.roles:
        options["roles"] = [role.strip() for role in request.roles.split(",")]
    sink = request.out.open("w") if request.out else None
    try:
        return asyncio.run(stream_session(request, pcm, options, sink, console))
    except KeyboardInterrupt:
        return 130
    finally:
        if sink:
            sink.close()
        sys.stdout.flush()
