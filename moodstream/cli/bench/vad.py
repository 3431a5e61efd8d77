"""`moodstream bench vad`: endpointing accuracy on a labelled stream of real speech, and VAD cost per window.

The stream alternates asterisk prompts (one professional speaker) with gaps of noise at known levels. Ground truth
is taken from each clean prompt before mixing: speech runs by frame energy, split where a pause in the prompt is at
least the endpointer's min silence (the same rule the endpointer applies), so truth and detector answer the same
question. Frames are 32 ms; a boundary matches when both start and end are within the tolerance.
"""

from __future__ import annotations

import random
import time

import numpy as np

from moodstream.cli.bench import report
from moodstream.cli.bench.speech import asterisk_prompts
from moodstream.processors.endpointer import Endpointer, EndpointerOptions, UtteranceCut
from moodstream.processors.vad import WINDOW, SileroStream, load_silero
from moodstream.producers.audio import load_pcm16
from moodstream.schemas.audio import SAMPLE_RATE, ms_to_bytes, ms_to_samples

FRAME = WINDOW  # 32 ms label frames


def clean_speech_runs(samples: np.ndarray, min_silence: int, floor_dbfs: float = -40.0) -> list[tuple[int, int]]:
    """Speech runs of a clean recording: 10 ms frames above the floor, joined across pauses shorter than min_silence."""
    hop = 160
    n = len(samples) // hop
    frames = samples[: n * hop].astype(np.float64).reshape(n, hop)
    rms = np.sqrt((frames**2).mean(axis=1)) + 1e-9
    loud = 20 * np.log10(rms / 32768.0) > floor_dbfs
    runs: list[list[int]] = []
    for i in np.flatnonzero(loud):
        start, end = int(i) * hop, (int(i) + 1) * hop
        if runs and start - runs[-1][1] < min_silence:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    return [(a, b) for a, b in runs if b - a >= ms_to_samples(100)]


def noise(length: int, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(length)
    pinkish = np.convolve(white, np.ones(8) / 8, mode="same")  # a little low-pass: fan/room-like rather than hiss
    pinkish /= np.sqrt(np.mean(pinkish**2)) + 1e-12
    return pinkish * 32768.0 * 10 ** (level_dbfs / 20)


def build_stream(count: int, seed: int, min_silence: int) -> tuple[np.ndarray, list[tuple[int, int]], dict]:
    rng = np.random.default_rng(seed)
    prompts = asterisk_prompts("vad")
    picks = random.Random(seed).sample(prompts, min(count, len(prompts)))
    noise_levels = (-70.0, -55.0, -45.0)
    pieces: list[np.ndarray] = []
    truth: list[tuple[int, int]] = []
    cursor = 0
    for prompt in picks:
        gap = int(rng.uniform(0.8, 2.5) * SAMPLE_RATE)
        level = float(rng.choice(noise_levels))
        pieces.append(noise(gap, level, rng))
        cursor += gap
        speech = np.frombuffer(load_pcm16(prompt.path), dtype="<i2").astype(np.float64)
        truth.extend((cursor + a, cursor + b) for a, b in clean_speech_runs(speech.astype(np.int16), min_silence))
        pieces.append(speech + noise(len(speech), -70.0, rng))  # a faint floor under speech too
        cursor += len(speech)
    tail = int(1.5 * SAMPLE_RATE)
    pieces.append(noise(tail, -55.0, rng))
    audio = np.clip(np.concatenate(pieces), -32768, 32767).astype(np.int16)
    info = {
        "prompts": len(picks),
        "audio_s": round(len(audio) / SAMPLE_RATE, 1),
        "noise_levels_dbfs": list(noise_levels),
    }
    return audio, truth, info


def frame_labels(segments: list[tuple[int, int]], frames: int) -> np.ndarray:
    labels = np.zeros(frames, dtype=bool)
    for a, b in segments:
        labels[a // FRAME : max(a // FRAME + 1, b // FRAME)] = True
    return labels


def boundary_scores(truth: list[tuple[int, int]], found: list[tuple[int, int]], tolerance: int) -> dict:
    used: set[int] = set()
    hits = 0
    for a, b in truth:
        for j, (c, d) in enumerate(found):
            if j not in used and abs(a - c) <= tolerance and abs(b - d) <= tolerance:
                used.add(j)
                hits += 1
                break
    precision = hits / len(found) if found else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def run(count: int = 60, seed: int = 7, frame_ms: int = 20, tolerance_ms: int = 200) -> dict:
    options = EndpointerOptions()
    audio, truth, info = build_stream(count, seed, ms_to_samples(options.min_silence_ms))
    model = load_silero()
    endpointer = Endpointer(SileroStream(model), options)
    pcm = audio.tobytes()
    step = ms_to_bytes(frame_ms)
    found: list[tuple[int, int]] = []
    for offset in range(0, len(pcm), step):
        for event in endpointer.feed(pcm[offset : offset + step], offset // 2):
            if isinstance(event, UtteranceCut):
                found.append((event.start_sample, event.end_sample))
    found.extend((e.start_sample, e.end_sample) for e in endpointer.flush() if isinstance(e, UtteranceCut))

    frames = len(audio) // FRAME
    accuracy = float((frame_labels(truth, frames) == frame_labels(found, frames)).mean())
    boundaries = boundary_scores(truth, found, ms_to_samples(tolerance_ms))

    # cost: one 512-sample window per call, one thread, as the stage runs it for 20-32 ms frames
    stream = SileroStream(model)
    windows = audio[: (len(audio) // WINDOW) * WINDOW].reshape(-1, WINDOW)
    timings = []
    for window in windows[:3000]:
        started = time.perf_counter()
        stream(window[None, :])
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "benchmark": "vad",
        **info,
        "true_utterances": len(truth),
        "found_utterances": len(found),
        "frame_accuracy": round(accuracy, 4),
        "boundary_precision": boundaries["precision"],
        "boundary_recall": boundaries["recall"],
        "boundary_f1": boundaries["f1"],
        "tolerance_ms": tolerance_ms,
        "ms_per_window_p50": round(float(np.percentile(timings, 50)), 4),
        "ms_per_window_p99": round(float(np.percentile(timings, 99)), 4),
        "threads": 1,
    }


def main(count: int, seed: int, as_json: bool) -> None:
    result = run(count, seed)
    report(result, as_json)
