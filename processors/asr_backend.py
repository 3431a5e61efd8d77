"""Which speech-to-text core the ASR stage runs (`MOODSTREAM_ASR_BACKEND`), behind one interface."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, get_args

import numpy as np

from moodstream.processors.transcriber import PartialTranscription, Transcription
from moodstream.settings import AsrBackend, AsrEngine

ASR_BACKENDS: tuple[AsrBackend, ...] = get_args(AsrBackend)
"""whisper: Whisper tiny.en (CTranslate2 int8), or the CTranslate2 Whisper folder in `MOODSTREAM_ASR_MODEL_PATH`;
moonshine-tiny: Moonshine tiny (ONNX, shipped in `models/asr/moonshine-tiny`)."""


class SpeechToText(Protocol):
    """What the ASR stage and the benches need of a speech-to-text core."""

    model_id: str

    def transcribe(self, pcm: np.ndarray | bytes, hurry: bool = False) -> Transcription:
        """The final transcript; `hurry`: other finals wait behind this one (a core may trade some accuracy for
        speed then, so that a busy worker does not fall behind)."""
        ...

    def transcribe_partial(self, pcm: np.ndarray | bytes, settled: str = "") -> PartialTranscription:
        """The words so far; `settled`: words an earlier partial heard at the start of this audio (a core may give
        them to its decoder instead of decoding them again)."""
        ...


def load_asr(
    backend: AsrBackend = "whisper", model_path: Path | None = None, threads: int = 1, engine: AsrEngine = "auto"
) -> SpeechToText:
    """The speech-to-text core of `backend`; `model_path` picks another model folder of the same kind; `engine`:
    where Whisper runs (`TranscriberOptions.engine`)."""
    if backend == "moonshine-tiny":
        from moodstream.processors.moonshine import MODEL_DIR, MoonshineOptions, MoonshineTranscriber

        return MoonshineTranscriber(MoonshineOptions(model_dir=model_path or MODEL_DIR, threads=threads))
    if backend == "whisper":
        from moodstream.processors.transcriber import Transcriber, TranscriberOptions

        return Transcriber(TranscriberOptions(model_path=model_path, cpu_threads=threads, engine=engine))
    raise ValueError(f"unknown ASR backend {backend!r}: one of {', '.join(ASR_BACKENDS)}")
