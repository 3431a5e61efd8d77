"""The words' sentiment of each transcript, read where the transcript is made (the ASR stage), as the records fusion
and the client take: a `TextScore` per final transcript, a `PartialResult` per partial one. No Kafka.

A model trained on dialogue context reads each utterance after the session's previous one (`dialogue.DialogueMemory`);
a partial is read in context too but never remembered as context. Not thread-safe: one thread calls it (the ASR
stage's one pool thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from moodstream.processors.dialogue import DialogueMemory
from moodstream.processors.text_sentiment import NO_TEXT, TextClassifier, TextSentiment
from moodstream.schemas.records import PartialResult, PartialTranscript, SentimentScores, TextScore, Transcript


def scores_of(result: TextSentiment) -> SentimentScores:
    return SentimentScores(negative=result.negative, neutral=result.neutral, positive=result.positive)


class TextReader:
    """The text model and each session's last words; `classifier` gives the (possibly still loading) model."""

    def __init__(self, classifier: Callable[[], TextClassifier], memory: DialogueMemory | None = None) -> None:
        self.classifier = classifier
        self.memory = memory or DialogueMemory()

    def read(self, session_id: str, start_ms: float, text: str) -> TextSentiment:
        """`text` (said from `start_ms` on) read after the session's previous utterance, when the model was trained
        with such context."""
        classifier = self.classifier()
        context = [self.memory.context(session_id, start_ms)] if classifier.uses_context else None
        return classifier.classify([text], context)[0]

    def score(self, transcript: Transcript) -> TextScore:
        """The final transcript's text score; a rejected or empty transcript scores as no text."""
        started = time.perf_counter()
        usable = not transcript.rejected and transcript.text.strip()
        sid, seq = transcript.session_id, transcript.utterance_seq
        result = self.read(sid, transcript.start_ms, transcript.text) if usable else NO_TEXT
        if usable:
            self.memory.remember(sid, transcript.start_ms, transcript.text)
        return TextScore(
            session_id=sid,
            utterance_seq=seq,
            text=transcript.text if usable else "",
            has_text=result.has_text,
            sentiment=scores_of(result),
            label=result.label if result.has_text else "neutral",  # type: ignore[arg-type]
            model_version=self.classifier().version,
            compute_ms=round((time.perf_counter() - started) * 1000, 3),
            asr_avg_logprob=transcript.avg_logprob,
            asr_compute_ms=transcript.compute_ms,
            asr_model=transcript.model_id,
            start_ms=transcript.start_ms,
            end_ms=transcript.end_ms,
            last_frame_received_at_ms=transcript.last_frame_received_at_ms,
            fusion_alpha=transcript.fusion_alpha,
            voice_sentiment=transcript.voice_sentiment,
            voice_emotion=transcript.voice_emotion,
            voice_arousal=transcript.voice_arousal,
            voice_model=transcript.voice_model,
            channel=transcript.channel,
            role=transcript.role,
        )

    def score_partial(self, partial: PartialTranscript) -> PartialResult:
        """The words so far, as the `partial` event the client gets."""
        result = self.read(partial.session_id, partial.start_ms, partial.text)
        return PartialResult(
            session_id=partial.session_id,
            utterance_seq=partial.utterance_seq,
            revision=partial.revision,
            start_ms=partial.start_ms,
            end_ms=partial.end_ms,
            text=partial.text,
            text_sentiment=scores_of(result),
            channel=partial.channel,
            role=partial.role,
        )
