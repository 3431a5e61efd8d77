"""`moodstream bench calls --data DIR`: two-party calls through the whole stack, each party's words against that
party streamed alone.

Each call is built from two speakers of DIR with transcripts: the first speaker's one or two clips on the left
channel, the second's on the right, in turns that overlap (the second starts while the first is still talking). The
call streams in real time as a two-channel session while each of its channels streams alone as a mono session
beside it (four channel-sessions at once). Reported: each channel's WER in the call and alone (and the largest
difference, in points), whether every final result names its party, and whether the summary on `session.ended`
counts each party's utterances.

DIR holds audio files and `labels.tsv` (header `file, ..., speaker, transcript`, as `data/calm_speech`) or
`transcripts.tsv` (`file<TAB>text`; each file then counts as its own speaker).
"""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.cli.bench import report, unusable
from moodstream.cli.bench.load import Stack
from moodstream.cli.bench.wer import wer
from moodstream.producers.audio import load_pcm16
from moodstream.producers.client import ClientOptions, MoodstreamClient
from moodstream.schemas.audio import SAMPLE_RATE

ROLES = ("agent", "customer")
TURN_GAP_S = 0.8
"""Silence between a party's clips when the other party does not speak in between."""


@dataclass(frozen=True)
class Clip:
    speaker: str
    text: str
    pcm: np.ndarray


@dataclass(frozen=True)
class Call:
    """A built call: the stereo PCM and each channel's reference words."""

    name: str
    channels: tuple[np.ndarray, np.ndarray]
    references: tuple[str, str]

    def stereo(self) -> bytes:
        return np.stack(self.channels, axis=1).tobytes()


def read_clips(data: Path, min_s: float = 2.0, max_s: float = 15.0) -> list[Clip]:
    """Clips with a transcript, between `min_s` and `max_s` long."""
    rows: list[tuple[str, str, str]] = []
    if (data / "labels.tsv").is_file():
        with (data / "labels.tsv").open(newline="", encoding="utf-8") as handle:
            rows = [(r["file"], r["speaker"], r["transcript"]) for r in csv.DictReader(handle, delimiter="\t")
                    if r.get("transcript", "").strip()]  # fmt: skip
    elif (data / "transcripts.tsv").is_file():
        with (data / "transcripts.tsv").open(newline="", encoding="utf-8") as handle:
            rows = [(r[0], r[0], r[1]) for r in list(csv.reader(handle, delimiter="\t"))[1:] if len(r) > 1]
    else:
        unusable("calls", f"{data} holds neither labels.tsv nor transcripts.tsv")
    clips = []
    for name, speaker, text in rows:
        pcm = np.frombuffer(load_pcm16(data / name), dtype="<i2")
        if min_s * SAMPLE_RATE <= len(pcm) <= max_s * SAMPLE_RATE:
            clips.append(Clip(speaker, text, pcm))
    return clips


def build_calls(clips: list[Clip], count: int) -> list[Call]:
    """`count` calls, each of two speakers' first one or two clips, in overlapping turns."""
    by_speaker: dict[str, list[Clip]] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    parties = sorted((c[:2] for c in by_speaker.values()), key=len, reverse=True)
    if len(parties) < 2 * count:
        unusable("calls", f"{len(parties)} speakers have clips with transcripts; {2 * count} are needed")
    return [call_of(f"call-{n}", parties[2 * n], parties[2 * n + 1]) for n in range(count)]


def call_of(name: str, first: list[Clip], second: list[Clip]) -> Call:
    """Turns a1, b1, a2, b2 (a party's second clip only if it has one): b1 starts when 60% of a1 is heard, a2 half a
    second before b1 ends, and a party's next clip after the other's, or its own, ends and a pause."""
    turns = [(0, first[0]), (1, second[0])] + [(channel, clips[1]) for channel, clips in ((0, first), (1, second))
                                                if len(clips) > 1]  # fmt: skip
    seconds = [len(clip.pcm) / SAMPLE_RATE for _channel, clip in turns]
    starts = [0.0, 0.6 * seconds[0]]
    for index in range(2, len(turns)):
        before = starts[index - 1] + seconds[index - 1]
        starts.append(before - 0.5 if index == 2 and turns[index][0] == 0 else before + TURN_GAP_S)
    length = int((max(s + d for s, d in zip(starts, seconds, strict=True)) + 1.5) * SAMPLE_RATE)
    channels = (np.zeros(length, dtype="<i2"), np.zeros(length, dtype="<i2"))
    for (channel, clip), start in zip(turns, starts, strict=True):
        at = int(start * SAMPLE_RATE)
        channels[channel][at : at + len(clip.pcm)] = clip.pcm
    references = tuple(" ".join(clip.text for channel, clip in turns if channel == c) for c in (0, 1))
    return Call(name, channels, (references[0], references[1]))


async def session(url: str, pcm: bytes, options: dict) -> list[dict]:
    """One real-time session; every message until `session.ended`."""
    client = MoodstreamClient(url, ClientOptions(session_options=options))
    await client.connect()
    sender = asyncio.create_task(client.stream(pcm, realtime=True))
    messages = [message async for message in client.messages()]
    await sender
    await client.close()
    return messages


def words_of(messages: list[dict], role: str | None) -> str:
    finals = [m for m in messages if m["type"] == "utterance" and m["final"] and m.get("role") == role]
    return " ".join(m["text"] for m in sorted(finals, key=lambda m: m["start_ms"]))


async def measure_call(url: str, call: Call) -> dict:
    options = {"channels": 2, "roles": list(ROLES)}
    together, *alone = await asyncio.gather(
        session(url, call.stereo(), options),
        *(session(url, channel.tobytes(), {}) for channel in call.channels),
    )
    finals = [m for m in together if m["type"] == "utterance" and m["final"]]
    summary = (together[-1].get("summary") or {}) if together[-1]["type"] == "session.ended" else {}
    counted = [party["utterances"] for party in summary.get("parties", [])]
    row: dict = {"call": call.name, "tagged": all(m.get("role") in ROLES for m in finals),
                 "summary_counts_match": counted == [sum(m["role"] == r for m in finals) for r in ROLES]}  # fmt: skip
    for channel, role in enumerate(ROLES):
        row[f"{role}_wer_call"] = round(wer([call.references[channel]], [words_of(together, role)]), 4)
        row[f"{role}_wer_alone"] = round(wer([call.references[channel]], [words_of(alone[channel], None)]), 4)
    return row


def main(data: Path, calls: int, workers: int, settings: dict[str, str], as_json: bool) -> None:
    if not data.is_dir():
        unusable("calls", f"no data folder {data}")
    built = build_calls(read_clips(data), calls)
    stack = Stack(workers, settings=settings).start()
    try:
        rows = [asyncio.run(measure_call(stack.url, call)) for call in built]
    finally:
        stack.stop()
    gaps = [abs(r[f"{role}_wer_call"] - r[f"{role}_wer_alone"]) * 100 for r in rows for role in ROLES]
    report(
        {
            "calls": len(rows),
            "channel_wer_call": round(float(np.mean([r[f"{role}_wer_call"] for r in rows for role in ROLES])), 4),
            "channel_wer_alone": round(float(np.mean([r[f"{role}_wer_alone"] for r in rows for role in ROLES])), 4),
            "max_wer_gap_points": round(max(gaps), 2),
            "all_tagged": all(r["tagged"] for r in rows),
            "summaries_match": all(r["summary_counts_match"] for r in rows),
            "call_seconds": [round(len(c.channels[0]) / SAMPLE_RATE, 1) for c in built],
            "workers": workers,
            "settings": settings,
            "per_call": rows,
        },
        as_json,
    )
