"""Late fusion of one utterance's acoustic and text sentiment. Pure: no Kafka.

The voice of an utterance is two models' verdicts averaged: the acoustic CNN's (its whole-utterance score and its
500 ms windows pooled) and, once the transcript is in, the voice head's (`processors.voice_head`: the ASR encoder's
states and the prosody; share `encoder_voice_weight`). The voice head also says how agitated the voice is (arousal,
0…1), the cue that carries across speakers, languages and corpora. The rule then defaults to calm:
1. The voice counts as emotional only as far as it is sure. Two commitments, the larger counts:
   - by polarity: its polar mass m = p(negative) + p(positive) gives c = clip((m − lo) / (hi − lo), 0, 1)
     (lo = `voice_calm_below`, hi = `voice_emotional_above`), the voice's own distribution;
   - by arousal: a = clip((arousal − lo) / (hi − lo), 0, 1) (lo = `voice_agitation_from`, hi =
     `voice_agitated_above`), with the voice's pole split p(negative | polar) as its distribution: an agitated voice
     is an emotional one even when the polarity head, which carries worse to voices it never heard, says neutral.
   The voice enters fusion as c·voice + (1 − c)·neutral: a voice that leans only a little towards a pole and is not
   agitated reads as calm; a clearly emotional one keeps its verdict.
2. The words count as far as they carry sentiment: α = `text_weight` (0.7, or the session's `fusion_alpha`) scaled by
   the text model's polar mass (1 − p(neutral)), by its certainty between the poles (1 − H₂(p))^γ (H₂ the binary
   entropy of p(positive | polar)), and by ASR confidence (1 at an average token log-prob of −0.3 or better, 0 at
   −1.2 or worse); α = 0 without usable text.
3. fused = α·text + (1 − α)·voice′ over negative/neutral/positive; the label is its argmax and
   `fused_score` = p(positive) − p(negative) ∈ [−1, 1].
So neutral words and an ordinary voice give neutral; neutral words and a clearly emotional or agitated voice give the
voice's verdict (α ≈ 0); polar words decide, nudged by the voice (at most 1 − α of the mass). The four-way emotion
follows the same commitment: its neutral share is what the calm default leaves, the rest split as the voice head
splits angry, happy and sad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LABELS = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class FusionOptions:
    """Fusion settings."""

    text_weight: float = 0.7
    """α before entropy and confidence scaling (a session may override it)."""
    pooling: Literal["mean", "max"] = "mean"
    """How window scores inside the utterance are pooled ("max" takes each class's largest probability)."""
    whole_utterance_weight: float = 0.5
    """Share of the whole-utterance acoustic score against the pooled windows (1 = windows ignored)."""
    commitment_power: float = 1.0
    """γ in the polarity factor (1 − H₂(p))^γ: higher trusts only clearly polar text, 0 ignores polarity doubt."""
    confident_logprob: float = -0.3
    """ASR average log-prob at or above which the transcript is fully trusted."""
    unreliable_logprob: float = -1.2
    """ASR average log-prob at or below which the transcript gets no weight."""
    encoder_voice_weight: float = 0.75
    """Share of the voice head's polarity (`processors.voice_head`) in the utterance's voice, against the acoustic
    CNN's whole utterance and windows; used only when the transcript carries one."""
    voice_calm_below: float = 0.4
    """Voice polar mass (p(negative) + p(positive)) at or below which the voice counts as calm (commitment 0)."""
    voice_emotional_above: float = 0.6
    """Voice polar mass at or above which the voice's verdict counts in full (commitment 1); ≤ `voice_calm_below`
    turns the calm default off."""
    voice_agitation_from: float = 0.25
    """Voice arousal at or below which arousal adds no commitment."""
    voice_agitated_above: float = 0.5
    """Voice arousal at or above which the voice counts as emotional in full, split between the poles as its
    polarity splits them; ≤ `voice_agitation_from` turns the arousal rule off."""


@dataclass(frozen=True)
class Fused:
    distribution: dict[str, float]
    score: float
    label: str
    text_weight: float
    audio_sentiment: dict[str, float] | None
    """What the voice model said (before its commitment was applied)."""
    voice_commitment: float
    """How far the voice's polar verdict counted (1: in full, 0: read as calm)."""
    arousal: float | None = None
    """The voice's arousal the rule read (None: no voice head spoke)."""


def binary_entropy(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def pool(windows: list[dict[str, float]], how: str) -> dict[str, float] | None:
    if not windows:
        return None
    if how == "max":
        raw = {k: max(w[k] for w in windows) for k in LABELS}
    else:
        raw = {k: sum(w[k] for w in windows) / len(windows) for k in LABELS}
    total = sum(raw.values()) or 1.0
    return {k: v / total for k, v in raw.items()}


def mix(first: dict[str, float] | None, second: dict[str, float] | None, weight: float) -> dict[str, float] | None:
    """weight·first + (1 − weight)·second; either alone when the other is missing."""
    if first is None or second is None:
        return first or second
    return {k: weight * first[k] + (1 - weight) * second[k] for k in LABELS}


class Fuser:
    def __init__(self, options: FusionOptions | None = None) -> None:
        self.options = options or FusionOptions()

    def audio_distribution(
        self,
        whole: dict[str, float] | None,
        windows: list[dict[str, float]],
        encoder_voice: dict[str, float] | None = None,
    ) -> dict[str, float] | None:
        """The utterance's voice: the CNN's whole-utterance score and pooled windows, then the encoder's verdict."""
        cnn = mix(whole, pool(windows, self.options.pooling), self.options.whole_utterance_weight)
        return mix(encoder_voice, cnn, self.options.encoder_voice_weight)

    def voice_commitment(self, audio: dict[str, float]) -> float:
        """Commitment by polarity alone."""
        lo, hi = self.options.voice_calm_below, self.options.voice_emotional_above
        if hi <= lo:
            return 1.0
        return min(1.0, max(0.0, (1.0 - audio["neutral"] - lo) / (hi - lo)))

    def agitation(self, arousal: float | None) -> float:
        """Commitment by arousal alone (0 without one)."""
        lo, hi = self.options.voice_agitation_from, self.options.voice_agitated_above
        if arousal is None or hi <= lo:
            return 0.0
        return min(1.0, max(0.0, (arousal - lo) / (hi - lo)))

    def committed_voice(self, audio: dict[str, float], arousal: float | None) -> tuple[dict[str, float], float]:
        """The voice's distribution and commitment under rule 1 (before the calm default mixes in neutral)."""
        by_polarity, by_arousal = self.voice_commitment(audio), self.agitation(arousal)
        if by_arousal <= by_polarity:
            return audio, by_polarity
        polar = audio["negative"] + audio["positive"]
        negative = audio["negative"] / polar if polar > 0 else 0.5
        return {"negative": negative, "neutral": 0.0, "positive": 1.0 - negative}, by_arousal

    def emotion(self, voice_emotion: dict[str, float] | None, commitment: float) -> dict[str, float] | None:
        """The four-way emotion under the calm default: neutral gets what the commitment leaves, the rest is split
        as the voice head splits angry, happy and sad."""
        if voice_emotion is None:
            return None
        emotional = {k: v for k, v in voice_emotion.items() if k != "neutral"}
        total = sum(emotional.values())
        shares = {k: (v / total if total > 0 else 1 / len(emotional)) for k, v in emotional.items()}
        return {k: commitment * shares[k] for k in emotional} | {"neutral": 1.0 - commitment}

    def text_weight(self, text: dict[str, float] | None, avg_logprob: float | None, alpha: float | None) -> float:
        if text is None:
            return 0.0
        o = self.options
        polar = text["positive"] + text["negative"]
        p_positive = text["positive"] / polar if polar > 0 else 0.5
        commitment = (1.0 - text["neutral"]) * (1.0 - binary_entropy(p_positive)) ** o.commitment_power
        confidence = 1.0
        if avg_logprob is not None:
            span = o.confident_logprob - o.unreliable_logprob
            confidence = min(1.0, max(0.0, (avg_logprob - o.unreliable_logprob) / span))
        return (o.text_weight if alpha is None else alpha) * commitment * confidence

    def fuse(
        self,
        text: dict[str, float] | None,
        audio: dict[str, float] | None,
        avg_logprob: float | None = None,
        alpha: float | None = None,
        arousal: float | None = None,
    ) -> Fused:
        """`text` None means no usable text; `audio` None means no acoustic score (text only); `arousal` is the
        voice's (None without a voice head)."""
        weight = self.text_weight(text, avg_logprob, alpha) if audio is not None else (1.0 if text else 0.0)
        commitment = 0.0
        if text is None and audio is None:
            distribution = {"negative": 0.0, "neutral": 1.0, "positive": 0.0}
        elif audio is None:
            distribution = dict(text)  # type: ignore[arg-type]
        else:
            committed, commitment = self.committed_voice(audio, arousal)
            voice = {k: commitment * committed[k] + (1 - commitment) * (k == "neutral") for k in LABELS}
            distribution = {k: weight * (text[k] if text else 0.0) + (1 - weight) * voice[k] for k in LABELS}
        label = max(LABELS, key=distribution.__getitem__)
        score = max(-1.0, min(1.0, distribution["positive"] - distribution["negative"]))
        return Fused(distribution, score, label, weight, audio, commitment, arousal)
