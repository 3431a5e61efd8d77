"""The serving cores in one process, clip by clip, as a worker runs them on one utterance: the benchmarks that judge
the verdict (`bench sentiment`, `bench fusion`) use this so they measure what users get.

Per clip: Silero VAD trims it to its speech (first speech window to last, with the endpointer's padding), the voice
model scores the whole utterance and its 500 ms windows, Whisper transcribes it (and the voice head reads its
encoder states and the prosody), the text model scores the transcript, and the fuser combines them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from moodstream.processors.acoustic import AcousticClassifier, AcousticOptions, AcousticResult
from moodstream.processors.endpointer import EndpointerOptions
from moodstream.processors.fusion import Fused, Fuser
from moodstream.processors.text_sentiment import TextClassifier, TextSentimentOptions
from moodstream.processors.transcriber import Transcriber, TranscriberOptions, Transcription
from moodstream.processors.vad import SileroStream, load_silero, speech_span
from moodstream.processors.voice_head import VoiceHead, VoiceVerdict
from moodstream.schemas.audio import ms_to_samples


@dataclass(frozen=True)
class ClipVerdict:
    audio: dict[str, float] | None
    """The voice's three-way distribution as the fusion stage forms it (the CNN's whole utterance and windows, and
    the ASR encoder's verdict)."""
    cnn: dict[str, float] | None
    """The acoustic CNN's part alone (whole utterance and windows pooled)."""
    encoder: dict[str, float] | None
    """The voice head's polarity alone (None without a voice head)."""
    text: dict[str, float] | None
    """The text model's distribution, None when ASR gave no usable text."""
    fused: Fused
    transcript: str
    emotion: dict[str, float] | None = None
    """Four-way emotion as the fused result carries it (None without a voice head)."""
    arousal: float | None = None
    """The voice's arousal as the fused result carries it (None without a voice head)."""
    voice_label: str = "neutral"
    """What the voice alone says through fusion's calm default and arousal rule (the result without words)."""
    voice_ms: float = 0.0
    """What the voice head added to the ASR call (pooling, prosody, heads)."""


@dataclass(frozen=True)
class Heard:
    """What the models made of one clip before fusion."""

    whole: AcousticResult
    windows: list[dict[str, float]]
    transcript: Transcription
    text: dict[str, float] | None


def label_of(distribution: dict[str, float] | None) -> str:
    return max(distribution, key=distribution.__getitem__) if distribution else "neutral"


class ServingPath:
    """The serving cores, one thread each."""

    def __init__(self, voice_head: Path | None = None) -> None:
        """`voice_head`: a head file to use instead of the shipped one (a leave-one-corpus-out fold's, say)."""
        self.vad = SileroStream(load_silero())
        options = AcousticOptions(threads=1)
        self.acoustic = AcousticClassifier(replace(options, voice_head_path=voice_head) if voice_head else options)
        self.asr = Transcriber(TranscriberOptions(cpu_threads=1))
        if voice_head is not None:
            self.asr.voice_head = VoiceHead.load(voice_head)
        self.text = TextClassifier(TextSentimentOptions(threads=1))
        self.fuser = Fuser()

    def speech(self, pcm: np.ndarray) -> np.ndarray:
        """The clip from its first to its last speech window, padded as the endpointer pads; all of it if no window
        reaches the start threshold."""
        options = EndpointerOptions()
        return speech_span(self.vad, pcm, options.start_threshold, ms_to_samples(options.speech_pad_ms))

    def run(self, audio: np.ndarray, trim: bool = True) -> ClipVerdict:
        """`audio` float32 16 kHz mono in −1…1."""
        heard = self.hear(audio, trim)
        return self.verdict(heard, heard.transcript.voice)

    def hear(self, audio: np.ndarray, trim: bool) -> Heard:
        """Everything but fusion: VAD trim, the CNN on the whole utterance and its windows, ASR, the words."""
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        if trim:
            pcm = self.speech(pcm)
        whole = self.acoustic.classify(pcm)
        windows = [self.acoustic.classify(pcm[i : i + 8000]).sentiment for i in range(0, len(pcm) - 8000 + 1, 8000)]
        transcript = self.asr.transcribe(pcm.tobytes())
        text = None
        if not transcript.rejected:
            scores = self.text.classify([transcript.text])[0]
            text = {"negative": scores.negative, "neutral": scores.neutral, "positive": scores.positive}
        return Heard(whole, windows, transcript, text)

    def verdict(self, heard: Heard, voice: VoiceVerdict | None) -> ClipVerdict:
        """Fusion of what was heard with the voice head's `voice`, as the fusion stage forms it."""
        whole, windows, transcript, text = heard.whole, heard.windows, heard.transcript, heard.text
        audio_dist = self.fuser.audio_distribution(whole.sentiment, windows, voice.polarity if voice else None)
        arousal = voice.arousal if voice else whole.arousal  # as the fusion stage picks it (`fusion_join._arousal`)
        fused = self.fuser.fuse(text, audio_dist, transcript.avg_logprob, arousal=arousal)
        emotion = self.fuser.emotion(voice.emotion if voice else None, fused.voice_commitment)
        cnn = self.fuser.audio_distribution(whole.sentiment, windows)
        polarity = voice.polarity if voice else None
        voice_label = self.fuser.fuse(None, audio_dist, arousal=arousal).label if audio_dist else "neutral"
        return ClipVerdict(
            audio_dist, cnn, polarity, text, fused, transcript.text, emotion, arousal, voice_label, transcript.voice_ms
        )
