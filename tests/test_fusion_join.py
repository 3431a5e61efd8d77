"""The fusion join without a broker: when results go out, which revision, and what is acked when."""

from __future__ import annotations

import pytest

from moodstream.processors.fusion import Fuser
from moodstream.processors.fusion_join import FusionJoin, JoinOptions
from moodstream.schemas.records import AcousticScore, EmotionScores, SentimentScores, TextScore

ANGRY = SentimentScores(negative=0.9, neutral=0.05, positive=0.05)
HAPPY_WORDS = SentimentScores(negative=0.01, neutral=0.02, positive=0.97)


def acoustic(seq: int, window: int | None) -> AcousticScore:
    return AcousticScore(session_id="s1", utterance_seq=seq, window_seq=window, start_ms=0.0, end_ms=500.0,
                         sentiment=ANGRY, emotions={}, model_version="a", compute_ms=1.0,
                         received_at_ms=1000.0)  # fmt: skip


def text(seq: int) -> TextScore:
    return TextScore(session_id="s1", utterance_seq=seq, text="great", has_text=True, sentiment=HAPPY_WORDS,
                     label="positive", model_version="t", compute_ms=1.0, asr_avg_logprob=-0.1,
                     last_frame_received_at_ms=900.0)  # fmt: skip


def new_join() -> FusionJoin[str]:
    return FusionJoin(Fuser(), JoinOptions(degrade_after_s=3.0, give_up_after_s=60.0, remembered_results=2))


def test_the_final_result_goes_out_when_whole_score_and_text_are_in_and_releases_every_input() -> None:
    join = new_join()
    assert join.on_score(acoustic(0, 0), "w0", 0, now=0.0, wall_ms=1000.0).results == []
    assert join.on_score(acoustic(0, None), "whole", 0, now=0.1, wall_ms=1100.0).results == []
    step = join.on_score(text(0), "text", 0, now=0.2, wall_ms=1200.0)
    [result] = step.results
    assert (result.revision, result.final, result.fused_label) == (1, True, "positive")
    assert result.latencies_ms["pipeline"] == 300.0  # from the last frame's arrival (900) to now
    assert step.acks == ["w0", "whole", "text"]


def test_late_text_gets_an_acoustic_only_result_first_then_the_final() -> None:
    join = new_join()
    join.on_score(acoustic(0, None), "whole", 0, now=0.0, wall_ms=0.0)
    assert join.tick(now=2.0, wall_ms=0.0).results == []
    early = join.tick(now=3.5, wall_ms=0.0)
    [degraded] = early.results
    assert (degraded.revision, degraded.final, degraded.fused_label, degraded.text) == (0, False, "negative", "")
    assert early.acks == []  # inputs stay held until the final result is out
    assert join.tick(now=4.0, wall_ms=0.0).results == []  # sent once
    final = join.on_score(text(0), "text", 0, now=5.0, wall_ms=0.0)
    assert [r.revision for r in final.results] == [1] and final.acks == ["whole", "text"]


def test_replays_and_late_windows_of_a_finished_utterance_are_acked_without_a_second_result() -> None:
    join = new_join()
    join.on_score(acoustic(0, None), "whole", 0, now=0.0, wall_ms=0.0)
    join.on_score(text(0), "text", 0, now=0.0, wall_ms=0.0)
    again = join.on_score(text(0), "text-again", 0, now=1.0, wall_ms=0.0)
    late = join.on_score(acoustic(0, 3), "late-window", 0, now=1.0, wall_ms=0.0)
    assert (again.results, again.acks, late.results, late.acks) == ([], ["text-again"], [], ["late-window"])


def test_an_utterance_whose_text_never_comes_is_finished_from_the_voice_and_stray_windows_are_dropped() -> None:
    join = new_join()
    join.on_score(acoustic(0, None), "whole", 0, now=0.0, wall_ms=0.0)
    join.on_score(acoustic(1, 0), "stray", 0, now=0.0, wall_ms=0.0)
    first = join.tick(now=61.0, wall_ms=0.0)
    assert [r.revision for r in first.results] == [0] and first.acks == ["stray"]  # acoustic-only first
    step = join.tick(now=61.25, wall_ms=0.0)
    assert [(r.utterance_seq, r.revision, r.fused_label) for r in step.results] == [(0, 1, "negative")]
    assert step.acks == ["whole"] and join.pending == {}


def test_a_revoked_partition_drops_its_waiting_utterances_without_acking_them() -> None:
    join = new_join()
    join.on_score(acoustic(0, None), "whole", 3, now=0.0, wall_ms=0.0)
    join.forget({3})
    assert join.pending == {} and join.tick(now=100.0, wall_ms=0.0).acks == []


def test_only_the_newest_finished_utterances_are_remembered() -> None:
    join = new_join()
    for seq in range(3):
        join.on_score(acoustic(seq, None), f"w{seq}", 0, now=0.0, wall_ms=0.0)
        join.on_score(text(seq), f"t{seq}", 0, now=0.0, wall_ms=0.0)
    assert list(join.finished) == [("s1", 1), ("s1", 2)]


def test_the_voice_the_transcript_brings_is_averaged_in_only_once_the_transcript_is_there() -> None:
    """The acoustic-only result is the CNN's voice alone; the final averages in the voice head's verdict (three parts
    to the CNN's one), which counts even when the words were unusable."""
    calm = SentimentScores(negative=0.05, neutral=0.9, positive=0.05)
    join = new_join()
    join.on_score(acoustic(0, None), "whole", 0, now=0.0, wall_ms=0.0)
    [degraded] = join.tick(now=3.5, wall_ms=0.0).results
    assert degraded.audio_sentiment == ANGRY and degraded.fused_label == "negative"
    no_words = text(0).model_copy(update={"has_text": False, "text": "", "voice_sentiment": calm})
    [final] = join.on_score(no_words, "text", 0, now=4.0, wall_ms=0.0).results
    assert final.audio_sentiment is not None
    assert final.audio_sentiment.negative == pytest.approx(0.25 * ANGRY.negative + 0.75 * calm.negative)  # 1:3
    assert final.fused_label == "neutral"  # polar mass 0.31: calm wins


def test_the_result_carries_the_voice_heads_arousal_and_emotion_once_the_transcript_brings_them() -> None:
    """Before the transcript: the whole utterance's prosody arousal, no emotion. After: the voice head's arousal,
    and its emotion under the same commitment that decided the voice's polarity."""
    join = new_join()
    join.on_score(acoustic(0, 0).model_copy(update={"arousal": 0.3}), "w0", 0, now=0.0, wall_ms=0.0)
    join.on_score(acoustic(0, None).model_copy(update={"arousal": 0.2}), "whole", 0, now=0.0, wall_ms=0.0)
    [degraded] = join.tick(now=3.5, wall_ms=0.0).results
    assert degraded.arousal == 0.2 and degraded.emotion is None and degraded.emotion_label is None
    agitated = {"voice_arousal": 0.9, "voice_emotion": EmotionScores(angry=0.5, happy=0.1, sad=0.1, neutral=0.3),
                "has_text": False, "text": ""}  # fmt: skip
    [final] = join.on_score(text(0).model_copy(update=agitated), "text", 0, now=4.0, wall_ms=0.0).results
    assert final.arousal == 0.9 and final.weights.voice_commitment == 1.0  # agitated: the voice counts in full
    assert final.emotion_label == "angry" and final.emotion is not None and final.emotion.neutral == 0.0
    assert final.emotion.angry == pytest.approx(0.5 / 0.7, abs=1e-4)  # the head's split of angry, happy and sad


def test_windows_give_the_arousal_when_nothing_else_has_one() -> None:
    join = new_join()
    for window, arousal in enumerate((0.2, 0.6)):
        join.on_score(acoustic(0, window).model_copy(update={"arousal": arousal}), f"w{window}", 0, 0.0, 0.0)
    join.on_score(acoustic(0, None), "whole", 0, now=0.0, wall_ms=0.0)
    [degraded] = join.tick(now=3.5, wall_ms=0.0).results
    assert degraded.arousal == pytest.approx(0.4)


def test_a_score_that_rounds_to_zero_from_below_is_zero_not_minus_zero() -> None:
    import math

    level = SentimentScores(negative=0.33334, neutral=0.33333, positive=0.33333)  # score -0.00001
    join = new_join()
    join.on_score(acoustic(0, None).model_copy(update={"sentiment": level}), "whole", 0, now=0.0, wall_ms=0.0)
    words = text(0).model_copy(update={"has_text": False, "text": ""})
    [final] = join.on_score(words, "text", 0, now=0.0, wall_ms=0.0).results
    assert final.fused_score == 0.0 and math.copysign(1.0, final.fused_score) == 1.0


def test_a_score_that_comes_twice_while_its_utterance_waits_counts_once_and_both_copies_are_released() -> None:
    join, twice = new_join(), new_join()
    calm = AcousticScore(session_id="s1", utterance_seq=0, window_seq=1, start_ms=500.0, end_ms=1000.0,
                         sentiment=SentimentScores(negative=0.05, neutral=0.9, positive=0.05), emotions={},
                         model_version="a", compute_ms=1.0, received_at_ms=1000.0)  # fmt: skip
    for target, windows in ((join, [acoustic(0, 0), calm]), (twice, [acoustic(0, 0), calm, calm])):
        for n, window in enumerate(windows):
            target.on_score(window, f"w{n}", 0, now=0.0, wall_ms=0.0)
        target.on_score(acoustic(0, None), "whole", 0, now=0.0, wall_ms=0.0)
    once, doubled = (target.on_score(text(0), "text", 0, now=0.1, wall_ms=0.0) for target in (join, twice))
    assert doubled.results == once.results  # the window handed off and its topic copy: one window, not two
    assert doubled.acks == ["w0", "w1", "w2", "whole", "text"]
