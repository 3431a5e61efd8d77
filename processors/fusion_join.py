"""The fusion stage as a pure state machine: each utterance's acoustic scores (500 ms windows and the whole utterance)
and its text score in; fused results and the input records that may be acknowledged out. No Kafka: the shell
(`stages/fusion.py`) sends and acks exactly what a `JoinStep` says.

Invariants (no result lost, none doubled):
- An utterance's input records stay unacked until its final result is out; a worker that dies replays them and the
  next owner sends the same result.
- Revisions are fixed by kind (0: acoustic-only, sent when the text is `degrade_after_s` late; 1: final), so a
  replayed result has the identity of the original and the gateway drops it.
- After its final result, an utterance is remembered (up to `remembered_results`), so late windows and replays are
  acked without a second result.
- A record that comes twice while its utterance waits (handed off in the worker, then its topic copy) counts once;
  both tokens are held and released together.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from moodstream.processors.fusion import Fuser
from moodstream.schemas.records import (
    AcousticScore,
    EmotionScores,
    FusedResult,
    FusionWeights,
    SentimentScores,
    TextScore,
)

log = logging.getLogger("moodstream.fusion")

Token = TypeVar("Token")
Key = tuple[str, int]
"""(session id, utterance seq)."""


@dataclass(frozen=True)
class JoinOptions:
    """When the fusion stage stops waiting."""

    degrade_after_s: float = 3.0
    """Text this late after the whole-utterance acoustic score: send an acoustic-only result (revision 0) first."""
    give_up_after_s: float = 60.0
    """An utterance still incomplete after this long gets its final from what arrived (or is dropped if nothing)."""
    remembered_results: int = 100_000
    """Finished utterances remembered to drop replays and late windows (oldest forgotten first)."""


@dataclass
class Pending(Generic[Token]):
    partition: int
    created: float
    windows: list[dict[str, float]] = field(default_factory=list)
    window_arousals: list[float] = field(default_factory=list)
    whole: AcousticScore | None = None
    whole_at: float = 0.0
    text: TextScore | None = None
    degraded_sent: bool = False
    held: list[Token] = field(default_factory=list)
    seen: set[tuple[object, ...]] = field(default_factory=set)
    """Identities of the records counted."""


@dataclass
class JoinStep(Generic[Token]):
    """Send `results`, then ack `acks`."""

    results: list[FusedResult] = field(default_factory=list)
    acks: list[Token] = field(default_factory=list)


class FusionJoin(Generic[Token]):
    def __init__(self, fuser: Fuser, options: JoinOptions | None = None) -> None:
        self.fuser = fuser
        self.options = options or JoinOptions()
        self.pending: dict[Key, Pending[Token]] = {}
        self.finished: collections.OrderedDict[Key, None] = collections.OrderedDict()

    def on_score(
        self, record: AcousticScore | TextScore, token: Token, partition: int, now: float, wall_ms: float
    ) -> JoinStep[Token]:
        """`now`: a monotonic clock in seconds; `wall_ms`: Unix ms (for the end-to-end latency)."""
        key = (record.session_id, record.utterance_seq)
        if key in self.finished:  # a late window, or a replay of an utterance already sent
            return JoinStep(acks=[token])
        state = self.pending.setdefault(key, Pending(partition, now))
        state.held.append(token)
        if record.identity() in state.seen:
            return JoinStep()
        state.seen.add(record.identity())
        if isinstance(record, TextScore):
            state.text = record
        elif record.window_seq is None:
            state.whole, state.whole_at = record, now
        else:
            state.windows.append(record.sentiment.model_dump())
            if record.arousal is not None:
                state.window_arousals.append(record.arousal)
        if state.whole is not None and state.text is not None:
            return self._finish(key, state, wall_ms)
        return JoinStep()

    def tick(self, now: float, wall_ms: float) -> JoinStep[Token]:
        """Send acoustic-only results for late text; finish or drop utterances waited on too long."""
        step: JoinStep[Token] = JoinStep()
        o = self.options
        for key, state in list(self.pending.items()):
            if state.whole is not None and not state.degraded_sent and now - state.whole_at > o.degrade_after_s:
                state.degraded_sent = True
                step.results.append(self.result(key, state, final=False, wall_ms=wall_ms))
            elif now - state.created > o.give_up_after_s:
                log.warning("utterance %s: %s never came", key, "text" if state.text is None else "acoustic score")
                if state.whole is not None or state.text is not None:
                    finished = self._finish(key, state, wall_ms)
                    step.results += finished.results
                    step.acks += finished.acks
                else:  # stray windows only
                    del self.pending[key]
                    step.acks += state.held
        return step

    def forget(self, partitions: set[int]) -> None:
        """Drop what waits on partitions this worker gave up: their next owner replays the unacked scores and sends
        the result (acking them here would lose it)."""
        for key in [key for key, state in self.pending.items() if state.partition in partitions]:
            del self.pending[key]

    def _finish(self, key: Key, state: Pending[Token], wall_ms: float) -> JoinStep[Token]:
        self.pending.pop(key, None)
        self.finished[key] = None
        while len(self.finished) > self.options.remembered_results:
            self.finished.popitem(last=False)
        return JoinStep([self.result(key, state, final=True, wall_ms=wall_ms)], list(state.held))

    def result(self, key: Key, state: Pending[Token], final: bool, wall_ms: float) -> FusedResult:
        text = state.text if state.text is not None and state.text.has_text else None
        encoder_voice = state.text.voice_sentiment if state.text is not None else None
        audio = self.fuser.audio_distribution(
            state.whole.sentiment.model_dump() if state.whole else None,
            state.windows,
            encoder_voice.model_dump() if encoder_voice else None,
        )
        arousal = _arousal(state)
        fused = self.fuser.fuse(
            text.sentiment.model_dump() if text else None,
            audio,
            text.asr_avg_logprob if text else None,
            alpha=text.fusion_alpha if text else None,  # the session's own weight; without text it is 0 anyway
            arousal=arousal,
        )
        voice_emotion = state.text.voice_emotion if state.text is not None else None
        emotion = self.fuser.emotion(voice_emotion.model_dump() if voice_emotion else None, fused.voice_commitment)
        origin = (
            state.text.last_frame_received_at_ms if state.text else (state.whole.received_at_ms if state.whole else 0)
        )
        span = state.whole or state.text
        tag = state.text or state.whole  # a result is made only once one of them came
        return FusedResult(
            session_id=key[0],
            utterance_seq=key[1],
            revision=1 if final else 0,
            final=final,
            start_ms=span.start_ms if span else 0.0,
            end_ms=span.end_ms if span else 0.0,
            text=text.text if text else "",
            text_sentiment=text.sentiment if text else None,
            audio_sentiment=SentimentScores(**fused.audio_sentiment) if fused.audio_sentiment else None,
            fused_score=round(fused.score, 4) + 0.0,  # + 0.0: a score rounded from just below zero is 0, not -0
            fused_label=fused.label,  # type: ignore[arg-type]
            weights=FusionWeights(
                text=round(fused.text_weight, 4),
                audio=round(1 - fused.text_weight, 4),
                voice_commitment=round(fused.voice_commitment, 4),
            ),
            latencies_ms=_latencies(state, wall_ms - origin if origin else None),
            model_versions=_versions(state),
            last_frame_received_at_ms=origin,
            arousal=round(arousal, 4) if arousal is not None else None,
            emotion=EmotionScores(**{k: round(v, 4) for k, v in emotion.items()}) if emotion else None,
            emotion_label=max(emotion, key=emotion.__getitem__) if emotion else None,  # type: ignore[arg-type]
            channel=tag.channel if tag else 0,
            role=tag.role if tag else None,
        )


def _arousal(state: Pending) -> float | None:
    """The voice head's arousal of the whole utterance once the transcript brings it; before that the whole
    utterance's prosody, or the windows' mean."""
    if state.text is not None and state.text.voice_arousal is not None:
        return state.text.voice_arousal
    if state.whole is not None and state.whole.arousal is not None:
        return state.whole.arousal
    return sum(state.window_arousals) / len(state.window_arousals) if state.window_arousals else None


def _latencies(state: Pending, pipeline_ms: float | None) -> dict[str, float]:
    latencies = {"pipeline": round(max(0.0, pipeline_ms), 1) if pipeline_ms is not None else 0.0}
    if state.whole:
        latencies["acoustic"] = state.whole.compute_ms
    if state.text:
        latencies["asr"] = state.text.asr_compute_ms
        latencies["text"] = state.text.compute_ms
    return latencies


def _versions(state: Pending) -> dict[str, str]:
    versions: dict[str, str] = {}
    if state.whole:
        versions["acoustic"] = state.whole.model_version
    if state.text:
        versions["asr"] = state.text.asr_model
        versions["text"] = state.text.model_version
        if state.text.voice_model:
            versions["voice"] = state.text.voice_model
    return versions
