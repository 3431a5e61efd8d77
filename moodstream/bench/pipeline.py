"""The serving cores in one process, clip by clip, as a worker runs them on one utterance: the benchmarks that judge
the verdict (`bench sentiment`, `bench fusion`) use this so they measure what users get.

Per clip: Silero VAD trims it to its speech (first speech window to last, with the endpointer's padding), the voice
model scores the whole utterance and its 500 ms windows, Whisper transcribes it (and reads the voice from its
encoder states), the text model scores the transcript, and the fuser combines them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from processors.acoustic import AcousticClassifier, AcousticOptions
from processors.endpointer import EndpointerOptions
from processors.fusion import Fused, Fuser
from processors.text_sentiment import TextClassifier, TextSentimentOptions
from processors.transcriber import Transcriber, TranscriberOptions
from processors.vad import SileroStream, load_silero, speech_span
from schemas.audio import ms_to_samples


@dataclass(frozen=True)
class ClipVerdict:
    audio: dict[str, float] | None
    """The voice's three-way distribution as the fusion stage forms it (the CNN's whole utterance and windows, and
    the ASR encoder's verdict)."""
    cnn: dict[str, float] | None
    """The acoustic CNN's part alone (whole utterance and windows pooled)."""
    encoder: dict[str, float] | None
    """The ASR encoder's voice verdict alone (None without a voice head)."""
    text: dict[str, float] | None
    """The text model's distribution, None when ASR gave no usable text."""
    fused: Fused
    transcript: str


def label_of(distribution: dict[str, float] | None) -> str:
    return max(distribution, key=distribution.__getitem__) if distribution else "neutral"


class ServingPath:
    """The serving cores, one thread each."""

    def __init__(self) -> None:
        self.vad = SileroStream(load_silero())
        self.acoustic = AcousticClassifier(AcousticOptions(threads=1))
        self.asr = Transcriber(TranscriberOptions(cpu_threads=1))
        self.text = TextClassifier(TextSentimentOptions(threads=1))
        self.fuser = Fuser()

    def speech(self, pcm: np.ndarray) -> np.ndarray:
        """The clip from its first to its last speech window, padded as the endpointer pads; all of it if no window
        reaches the start threshold."""
        options = EndpointerOptions()
        return speech_span(self.vad, pcm, options.start_threshold, ms_to_samples(options.speech_pad_ms))

    def run(self, audio: np.ndarray, trim: bool = True) -> ClipVerdict:
        """`audio` float32 16 kHz mono in −1…1."""
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        if trim:
            pcm = self.speech(pcm)
        whole = self.acoustic.classify(pcm).sentiment
        windows = [self.acoustic.classify(pcm[i : i + 8000]).sentiment for i in range(0, len(pcm) - 8000 + 1, 8000)]
        transcript = self.asr.transcribe(pcm.tobytes())
        audio_dist = self.fuser.audio_distribution(whole, windows, transcript.voice_sentiment)
        text = None
        if not transcript.rejected:
            scores = self.text.classify([transcript.text])[0]
            text = {"negative": scores.negative, "neutral": scores.neutral, "positive": scores.positive}
        fused = self.fuser.fuse(text, audio_dist, transcript.avg_logprob)
        cnn = self.fuser.audio_distribution(whole, windows)
        return ClipVerdict(audio_dist, cnn, transcript.voice_sentiment, text, fused, transcript.text)
