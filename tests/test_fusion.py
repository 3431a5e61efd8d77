"""Late fusion core."""

from __future__ import annotations

import pytest

from moodstream.processors.fusion import Fuser, FusionOptions, binary_entropy, pool

POSITIVE_TEXT = {"negative": 0.02, "neutral": 0.0, "positive": 0.98}
UNSURE_TEXT = {"negative": 0.25, "neutral": 0.5, "positive": 0.25}  # p(positive) = 0.5
ANGRY_VOICE = {"negative": 0.8, "neutral": 0.15, "positive": 0.05}


def test_no_usable_text_leaves_the_voice_alone() -> None:
    fused = Fuser().fuse(None, ANGRY_VOICE)
    assert fused.text_weight == 0.0
    assert fused.distribution == ANGRY_VOICE and fused.label == "negative"
    assert fused.score == pytest.approx(0.05 - 0.8)


def test_confident_text_gets_nearly_the_full_weight() -> None:
    fused = Fuser().fuse(POSITIVE_TEXT, ANGRY_VOICE, avg_logprob=-0.1)
    assert fused.text_weight == pytest.approx(0.7 * (1 - binary_entropy(0.98)))
    assert fused.text_weight > 0.5
    assert sum(fused.distribution.values()) == pytest.approx(1.0)


def test_text_without_polarity_gets_no_weight() -> None:
    fused = Fuser().fuse(UNSURE_TEXT, ANGRY_VOICE, avg_logprob=-0.1)
    assert fused.text_weight == pytest.approx(0.0, abs=1e-9)
    assert fused.label == "negative"


def test_words_without_sentiment_leave_the_decision_to_the_voice() -> None:
    # a neutral class says so outright, even where the remaining mass leans to one pole
    plain_statement = {"negative": 0.08, "neutral": 0.9, "positive": 0.02}
    fused = Fuser().fuse(plain_statement, ANGRY_VOICE, avg_logprob=-0.1)
    assert fused.text_weight == pytest.approx(0.7 * 0.1 * (1 - binary_entropy(0.2)))
    assert fused.label == "negative"
    assert fused.distribution["neutral"] < 0.3


def test_low_asr_confidence_lowers_the_text_weight() -> None:
    fuser = Fuser()
    sure = fuser.fuse(POSITIVE_TEXT, ANGRY_VOICE, avg_logprob=-0.2).text_weight
    shaky = fuser.fuse(POSITIVE_TEXT, ANGRY_VOICE, avg_logprob=-0.75).text_weight
    garbled = fuser.fuse(POSITIVE_TEXT, ANGRY_VOICE, avg_logprob=-1.5).text_weight
    assert sure > shaky > garbled == 0.0
    assert shaky == pytest.approx(sure / 2, rel=1e-6)


def test_text_weight_override_and_text_only() -> None:
    fuser = Fuser(FusionOptions(text_weight=1.0))
    assert fuser.fuse(POSITIVE_TEXT, ANGRY_VOICE, alpha=0.0).label == "negative"
    assert fuser.fuse(POSITIVE_TEXT, None).label == "positive"
    assert fuser.fuse(None, None).label == "neutral"


def test_window_pooling() -> None:
    a = {"negative": 0.6, "neutral": 0.2, "positive": 0.2}
    b = {"negative": 0.2, "neutral": 0.2, "positive": 0.6}
    assert pool([a, b], "mean") == pytest.approx({"negative": 0.4, "neutral": 0.2, "positive": 0.4})
    assert pool([a, b], "max") == pytest.approx({"negative": 0.6 / 1.4, "neutral": 0.2 / 1.4, "positive": 0.6 / 1.4})
    fuser = Fuser(FusionOptions(whole_utterance_weight=0.5))
    assert fuser.audio_distribution(ANGRY_VOICE, []) == ANGRY_VOICE
    assert fuser.audio_distribution(None, [a, b]) == pytest.approx(pool([a, b], "mean"))
    mixed = fuser.audio_distribution(ANGRY_VOICE, [a])
    assert mixed["negative"] == pytest.approx(0.7)


def test_the_encoders_voice_is_averaged_with_the_cnns_when_the_transcript_brings_it() -> None:
    calm = {"negative": 0.1, "neutral": 0.8, "positive": 0.1}
    fuser = Fuser(FusionOptions(whole_utterance_weight=1.0, encoder_voice_weight=0.5))
    voice = fuser.audio_distribution(ANGRY_VOICE, [], calm)
    assert voice == pytest.approx({k: (ANGRY_VOICE[k] + calm[k]) / 2 for k in calm})
    assert fuser.audio_distribution(ANGRY_VOICE, [], None) == ANGRY_VOICE  # no head (or text late): the CNN alone
    assert fuser.audio_distribution(None, [], calm) == calm  # no acoustic score: the encoder's alone
    cnn_only = Fuser(FusionOptions(encoder_voice_weight=0.0))
    assert cnn_only.audio_distribution(ANGRY_VOICE, [], calm) == pytest.approx(ANGRY_VOICE)


PLAIN_WORDS = {"negative": 0.05, "neutral": 0.9, "positive": 0.05}


def test_neutral_words_and_a_voice_that_only_leans_give_neutral() -> None:
    leaning = {"negative": 0.45, "neutral": 0.5, "positive": 0.05}  # polar mass 0.5: half the way to "sure"
    fused = Fuser().fuse(PLAIN_WORDS, leaning, avg_logprob=-0.1)
    assert fused.voice_commitment == pytest.approx(0.5)
    assert fused.label == "neutral"
    assert fused.audio_sentiment == leaning  # what the voice said is reported as it said it


def test_neutral_words_and_a_clearly_emotional_voice_give_the_voice() -> None:
    fused = Fuser().fuse(PLAIN_WORDS, ANGRY_VOICE, avg_logprob=-0.1)
    assert fused.voice_commitment == 1.0
    assert fused.label == "negative"


def test_polar_words_decide_and_the_voice_only_nudges() -> None:
    calm_voice = {"negative": 0.1, "neutral": 0.8, "positive": 0.1}
    happy_voice = {"negative": 0.02, "neutral": 0.08, "positive": 0.9}
    angry_words = {"negative": 0.97, "neutral": 0.02, "positive": 0.01}
    with_calm = Fuser().fuse(angry_words, calm_voice, avg_logprob=-0.1)
    with_happy = Fuser().fuse(angry_words, happy_voice, avg_logprob=-0.1)
    assert with_calm.label == with_happy.label == "negative"
    assert with_happy.score > with_calm.score  # the voice moved it, towards positive


def test_the_calm_default_can_be_turned_off() -> None:
    leaning = {"negative": 0.55, "neutral": 0.4, "positive": 0.05}
    fuser = Fuser(FusionOptions(voice_calm_below=0.0, voice_emotional_above=0.0))
    fused = fuser.fuse(PLAIN_WORDS, leaning, avg_logprob=-0.1)
    assert fused.voice_commitment == 1.0 and fused.label == "negative"


def test_an_agitated_voice_counts_as_emotional_even_when_its_polarity_says_neutral() -> None:
    """Arousal carries to voices the polarity head never heard; the pole is the one the voice leans to."""
    calm_looking = {"negative": 0.2, "neutral": 0.7, "positive": 0.1}  # polar mass 0.3: calm by polarity alone
    assert Fuser().fuse(PLAIN_WORDS, calm_looking, avg_logprob=-0.1, arousal=0.1).label == "neutral"
    agitated = Fuser().fuse(PLAIN_WORDS, calm_looking, avg_logprob=-0.1, arousal=0.9)
    assert agitated.voice_commitment == 1.0 and agitated.label == "negative"
    assert agitated.score == pytest.approx(-1 / 3, abs=0.02)  # pole split 2:1, words neutral
    assert agitated.arousal == 0.9 and agitated.audio_sentiment == calm_looking
    halfway = Fuser().fuse(PLAIN_WORDS, calm_looking, avg_logprob=-0.1, arousal=0.375)  # between 0.25 and 0.5
    assert halfway.voice_commitment == pytest.approx(0.5)


def test_polar_words_still_decide_over_an_agitated_voice() -> None:
    angry_sounding = {"negative": 0.3, "neutral": 0.6, "positive": 0.1}
    fused = Fuser().fuse(POSITIVE_TEXT, angry_sounding, avg_logprob=-0.1, arousal=0.95)
    assert fused.label == "positive"


def test_the_emotion_follows_the_commitment() -> None:
    head = {"angry": 0.1, "happy": 0.3, "sad": 0.1, "neutral": 0.5}
    fuser = Fuser()
    assert fuser.emotion(head, 0.0) == {"angry": 0.0, "happy": 0.0, "sad": 0.0, "neutral": 1.0}
    full = fuser.emotion(head, 1.0)
    assert full is not None and full["neutral"] == 0.0 and full["happy"] == pytest.approx(0.6)
    assert fuser.emotion(None, 1.0) is None
    assert sum(fuser.emotion(head, 0.4).values()) == pytest.approx(1.0)  # type: ignore[union-attr]


def test_the_arousal_rule_can_be_turned_off() -> None:
    calm_looking = {"negative": 0.2, "neutral": 0.7, "positive": 0.1}
    fuser = Fuser(FusionOptions(voice_agitation_from=1.0, voice_agitated_above=1.0))
    assert fuser.fuse(PLAIN_WORDS, calm_looking, avg_logprob=-0.1, arousal=0.99).label == "neutral"
