"""The verdict benchmarks as a newcomer runs them: one JSON object on stdout and nothing else, or one line and exit 2
when data is missing; and the three-way figures they report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from moodstream.cli.bench import speech
from moodstream.cli.bench.text import previous_in_dialogue
from moodstream.cli.main import main
from moodstream.models.metrics import auc, class_report, three_way_report

DATA = Path(__file__).parent / "data"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moodstream", "bench", *args], capture_output=True, text=True)


def test_three_way_report_counts_recall_f1_shares_and_confusion() -> None:
    truth = ["negative", "neutral", "neutral", "neutral", "positive"]
    predicted = ["negative", "neutral", "positive", "neutral", "positive"]
    report = three_way_report(truth, predicted)
    assert report["confusion"] == [[1, 0, 0], [0, 2, 1], [0, 0, 1]]
    assert report["recall"] == {"negative": 1.0, "neutral": pytest.approx(2 / 3, abs=1e-4), "positive": 1.0}
    assert report["uar"] == pytest.approx((1 + 2 / 3 + 1) / 3, abs=1e-4)
    assert report["accuracy"] == 0.8
    assert report["shares"] == {"negative": 0.2, "neutral": 0.4, "positive": 0.4}
    # F1: negative 1, neutral 0.8, positive 2/3; weighted by support 1, 3, 1
    assert report["weighted_f1"] == pytest.approx((1 + 3 * 0.8 + 2 / 3) / 5, abs=1e-4)
    only_neutral = three_way_report(["neutral", "neutral"], ["neutral", "negative"])
    assert only_neutral["uar"] == 0.5 and set(only_neutral["recall"]) == {"neutral"}  # classes present only


def test_dialogue_context_is_the_previous_line_of_the_same_dialogue() -> None:
    rows = [
        {"sentence": "Hi .", "source_id": "dd:validation:d1:u0"},
        {"sentence": "Other talk", "source_id": "dd:validation:d2:u0"},
        {"sentence": "Hello !", "source_id": "dd:validation:d1:u1"},
        {"sentence": "No dialogue"},
    ]
    assert previous_in_dialogue(rows) == ["", "", "Hi .", ""]


@pytest.mark.stack  # starts its own processes
def test_bench_sentiment_prints_one_json_object_with_each_modality(tmp_path: Path) -> None:
    (tmp_path / "labels.tsv").write_text(f"file\tlabel3\tnote\n{DATA / 'three_prompts.wav'}\tneutral\tcalm IVR voice\n")
    clips = tmp_path / "clips.tsv"
    done = bench("sentiment", "--data", str(tmp_path), "--clips", str(clips), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert result["files"] == 1
    for modality in ("acoustic", "text", "fused"):
        assert {"uar", "accuracy", "confusion", "shares"} <= set(result[modality])
        assert sum(sum(row) for row in result[modality]["confusion"]) == 1
    header, row = [line.split("\t") for line in clips.read_text().splitlines()]
    clip = dict(zip(header, row, strict=True))
    assert clip["file"] == str(DATA / "three_prompts.wav") and clip["label3"] == "neutral"
    for stage in ("acoustic", "text", "fused"):  # the clip's row agrees with the confusion it was counted in
        assert clip[stage] == ["negative", "neutral", "positive"][result[stage]["confusion"][1].index(1)]
    assert -1 <= float(clip["fused_score"]) <= 1
    assert clip["transcript"].startswith("Goodbye")


@pytest.mark.stack  # starts its own processes
def test_bench_sentiment_scores_emotion_and_arousal_columns_and_rows_without_a_polarity(tmp_path: Path) -> None:
    wav = DATA / "three_prompts.wav"
    (tmp_path / "labels.tsv").write_text(
        "file\tlabel3\temotion\tarousal\tspeaker\n"
        f"{wav}\tneutral\tneutral\tneutral\ta\n"
        f"{DATA / 'read_sentence.wav'}\t\t\thigh\tb\n"  # an arousal rating with no polarity (as BAVED's)
    )
    clips = tmp_path / "clips.tsv"
    done = bench("sentiment", "--data", str(tmp_path), "--clips", str(clips), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["files"] == 2 and sum(map(sum, result["fused"]["confusion"])) == 1  # polarity: the labelled one
    assert result["emotion"]["clips"] == 1 and set(result["emotion"]["recall"]) == {"neutral"}
    assert result["arousal"]["clips"] == 2 and set(result["arousal"]["mean"]) == {"neutral", "high"}
    assert 0.0 <= result["arousal"]["auc"] <= 1.0
    assert result["models"]["voice_head"].startswith("voice-head-")
    rows = [dict(zip(*[line.split("\t") for line in (clips.read_text().splitlines()[0], row)], strict=True))
            for row in clips.read_text().splitlines()[1:]]  # fmt: skip
    assert [r["arousal"] for r in rows] == ["neutral", "high"]
    assert (
        rows[0]["result_emotion"] in ("angry", "happy", "sad", "neutral") and 0 <= float(rows[1]["result_arousal"]) <= 1
    )


def test_class_report_and_auc_count_what_they_say() -> None:
    emotions = ("angry", "happy", "sad", "neutral")
    report = class_report(["angry", "angry", "sad", "neutral"], ["angry", "neutral", "sad", "happy"], emotions)
    assert report["recall"] == {"angry": 0.5, "sad": 1.0, "neutral": 0.0}  # classes present only
    assert report["uar"] == pytest.approx(0.5) and report["confusion"][0] == [1, 0, 0, 1]
    assert auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    assert auc([0.3, 0.5, 0.5, 0.9], [False, True, False, True]) == pytest.approx(0.875)  # 3.5 of 4 pairs
    assert auc([0.1, 0.2], [False, False]) is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sentiment", "--data", "/nonexistent"], "labels.tsv"),
        (["acoustic", "--data", str(DATA)], "no RAVDESS-named"),
        (["acoustic", "--data", str(DATA), "--actors", "x"], "--actors"),
        (["asr", "--data", "/nonexistent"], "transcripts.tsv"),
        (["calls", "--data", "/nonexistent"], "no data folder"),
        (["calls", "--data", str(DATA)], "neither labels.tsv nor transcripts.tsv"),
    ],
)
@pytest.mark.stack  # starts its own processes
def test_a_bench_without_its_data_says_so_in_one_line_and_exits_2(args: list[str], says: str) -> None:
    done = bench(*args, "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr


@pytest.mark.parametrize("args", [["asr", "--data", "DIR", "--make-asterisk", "2"], ["vad", "--prompts", "2"]])
def test_a_bench_without_the_asterisk_prompts_names_the_packages_in_one_line_and_exits_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speech, "ASTERISK_SOUNDS", tmp_path / "not-installed")
    args = [str(tmp_path) if arg == "DIR" else arg for arg in args]
    done = CliRunner().invoke(main, ["bench", *args, "--json"])
    assert done.exit_code == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"bench {args[0]}: asterisk prompts not installed: apt-get install asterisk-core-sounds-en-g722 "
        "asterisk-core-sounds-en"
    ]


@pytest.mark.stack  # starts its own processes
def test_bench_asr_reads_the_transcripts_of_a_labels_file_and_keeps_the_long_clips(tmp_path: Path) -> None:
    """The long read-speech set is `calm_speech` itself: its labels.tsv, the rows with a transcript, `--min-seconds`."""
    sentence = (
        "If the reader will excuse me, I will say nothing of my antecedents, nor of the circumstances which led me to"
        " leave my native country. The narrative would be tedious to him and painful to myself."
    )
    (tmp_path / "labels.tsv").write_text(
        "file\tlabel3\toriginal_label\tspeaker\ttranscript\n"
        f"{DATA / 'read_sentence.wav'}\tneutral\tread\ts1\t{sentence}\n"
        f"{DATA / 'three_prompts.wav'}\tneutral\tivr\ts2\t\n"
    )
    done = bench("asr", "--data", str(tmp_path), "--min-seconds", "6", "--json")
    result = json.loads(done.stdout)
    assert result["files"] == 1 and result["wer"] == 0.0 and list(result["by_length"]) == [">10s"]
    too_long = bench("asr", "--data", str(tmp_path), "--min-seconds", "60", "--json")
    assert too_long.returncode == 2 and too_long.stdout == "" and "60 s of audio" in too_long.stderr


@pytest.mark.stack  # starts its own processes
def test_bench_text_reads_three_way_and_binary_files(tmp_path: Path) -> None:
    three = tmp_path / "three.tsv"
    three.write_text(
        "sentence\tlabel3\toriginal_label\tsource_id\n"
        '"Great, thanks!\tpositive\tjoy\tx:dev:d1:u0\n'
        "I hate this.\tnegative\tanger\tx:dev:d1:u1\n"
        "The bus leaves at six.\tneutral\tneutral\tx:dev:d2:u0\n"
    )
    result = json.loads(bench("text", "--tsv", str(three), "--context", "--json").stdout)
    assert result["format"] == "label3" and result["sentences"] == 3
    assert {"uar", "macro_f1", "weighted_f1", "recall", "confusion"} <= set(result)
    binary = tmp_path / "binary.tsv"
    binary.write_text("sentence\tlabel\na wonderful film\t1\na dull mess\t0\n")
    result = json.loads(bench("text", "--tsv", str(binary), "--json").stdout)
    assert result["format"] == "binary" and result["accuracy"] == 1.0


def test_the_soaks_speed_probe_reports_the_median_of_each_intervals_samples() -> None:
    from moodstream.cli.bench.soak import SpeedProbe, reference_work_cpu_ms

    assert reference_work_cpu_ms() > 0
    probe = SpeedProbe()  # not started: samples placed by hand
    assert probe.median_since(0.0) is None
    probe.samples += [(1.0, 30.0), (2.0, 20.0), (11.0, 25.0), (12.0, 27.0), (13.0, 90.0)]
    assert probe.median_since(0.0) == 27.0 and probe.median_since(10.0) == 27.0 and probe.median_since(12.5) == 90.0


def test_a_soak_interval_reports_its_highest_rss_as_well_as_its_last(tmp_path: Path) -> None:
    """The embedded broker's RSS is a sawtooth (a minute's records, freed when a slot is emptied): where in the tooth
    an interval ends decides its last reading, so each interval also carries its peak."""
    import os

    from moodstream.cli.bench.load import ProcessMeter
    from moodstream.cli.bench.soak import SoakReport, SpeedProbe

    meter = ProcessMeter({"broker": os.getpid()})
    report = SoakReport(tmp_path, 300.0, meter, SpeedProbe())
    tooth = [(t, (40 + 90 * (t % 60) / 60) * 2**20) for t in range(0, 92, 2)]  # 40 → 127 MB, freed at minute 1
    meter.rss_series["broker"] = [(t + 1.0, rss) for t, rss in tooth]
    report.close_interval([], meter.started + 1.0)
    line = json.loads((tmp_path / "intervals.jsonl").read_text().splitlines()[0])
    assert line["processes"]["broker"]["rss_peak_mb"] == pytest.approx(127.0)
    assert line["processes"]["broker"]["rss_mb"] == pytest.approx(85.0)  # where the interval ended in the tooth


def test_a_soak_interval_splits_its_latency_into_the_asr_call_the_rest_of_the_pipeline_and_the_relay() -> None:
    """A latency that creeps over an hour must show in which part creeps; the split comes from each final result's
    own `latencies_ms`, and only results received in the interval count."""
    from moodstream.cli.bench.load import SessionStats, stage_split
    from moodstream.cli.bench.soak import stage_medians

    stats = SessionStats()
    for at_s, asr, pipeline, e2e in [(10.0, 100.0, 300.0, 340.0), (20.0, 120.0, 330.0, 360.0), (400.0, 900, 9e3, 9e4)]:
        stats.stages_ms.append(stage_split({"latencies_ms": {"asr": asr, "pipeline": pipeline}}, at_s, e2e))
    split = {"asr": 110.0, "rest_of_pipeline": 205.0, "relay": 35.0, "beyond_asr": 240.0}
    assert stage_medians([stats], 0.0, 300.0) == split
    assert stage_medians([stats], 500.0, 800.0) is None


@pytest.mark.stack  # starts its own processes
def test_a_killed_benchmark_leaves_no_process_of_its_stack_behind() -> None:
    """A benchmark's stack (here the embedded broker and its tansu) goes when the benchmark dies, even by SIGKILL,
    which no handler of its own sees: a soak stopped from outside must not leave workers loading the machine."""
    parent_code = (
        "import time\n"
        "from moodstream.cli.bench.processes import bench_env, spawn\n"
        "print(spawn(['broker'], bench_env()).pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 30
        while not child.children() and time.monotonic() < deadline:  # the broker command starts tansu
            time.sleep(0.1)
        stack = [child, *child.children(recursive=True)]
        assert len(stack) >= 2, "the broker command did not start tansu"
        parent.kill()
        _gone, alive = psutil.wait_procs(stack, timeout=15)
        assert alive == []
    finally:
        parent.kill()
        parent.wait()


def test_a_capacity_round_reports_the_stacks_cpu_per_session_without_the_load_generator() -> None:
    from moodstream.cli.bench.load import LOAD_GENERATOR, capacity_round

    result = {
        "sessions": 10, "channel_sessions": 20, "e2e_ms_p95": 500.0, "lost": 0, "lag_trend_ms_per_min": 3.0,
        "partials": 40, "finals_hurried_share": 0.25, "reference_work_cpu_ms": 12.0,
        "processes": {"worker-0": {"cpu_pct": 40.0}, "worker-1": {"cpu_pct": 38.0}, "broker": {"cpu_pct": 30.0},
                      "gateway": {"cpu_pct": 12.0}, LOAD_GENERATOR: {"cpu_pct": 9.0}},
    }  # fmt: skip
    row = capacity_round(result, ok=True)
    assert (row["stack_cpu_pct"], row["stack_cpu_pct_per_session"], row["ok"]) == (120.0, 6.0, True)
    assert row["sessions"] == 10 and row["finals_hurried_share"] == 0.25 and "processes" not in row


def test_the_hurried_share_counts_only_the_finals_of_the_run() -> None:
    from moodstream.cli.bench.load import hurried_share

    assert hurried_share((30, 2), (130, 27)) == {"finals_started": 100, "finals_hurried_share": 0.25}
    assert hurried_share((5, 0), (5, 0)) == {"finals_started": 0, "finals_hurried_share": 0.0}


def test_a_set_option_reaches_every_process_of_the_stack_and_the_callers_own_settings_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moodstream.cli.bench.load import Stack
    from moodstream.cli.bench.processes import stack_settings

    monkeypatch.setenv("MOODSTREAM_PARTIAL_INTERVAL_MS", "0")  # the caller's shell: a benchmark measures the defaults
    monkeypatch.setenv("MOODSTREAM_KAFKA_FETCH_WAIT_MS", "30")  # broker tuning is the machine's, and is kept
    monkeypatch.setenv("MOODSTREAM_LEVEL_WINDOW_MS", "soon")  # dropped too, so it cannot fail what --set names
    settings = stack_settings(["audio_batch_ms=200", "MOODSTREAM_ASR_CATCH_UP=false", "max_sessions=8"])
    env = Stack(workers=1, settings=settings).env()
    assert (env["MOODSTREAM_AUDIO_BATCH_MS"], env["MOODSTREAM_ASR_CATCH_UP"]) == ("200", "false")
    assert env["MOODSTREAM_MAX_SESSIONS"] == "8"  # over the bench's own 1000
    assert "MOODSTREAM_PARTIAL_INTERVAL_MS" not in env and env["MOODSTREAM_KAFKA_FETCH_WAIT_MS"] == "30"
    assert "MOODSTREAM_AUDIO_BATCH_MS" not in Stack(workers=1).env()


@pytest.mark.parametrize(
    ("pair", "says"),
    [
        ("audio_batch_ms", "not KEY=VALUE"),
        ("audio_batch=200", "not KEY=VALUE"),
        ("audio_batch_ms=soon", "MOODSTREAM_AUDIO_BATCH_MS"),
        ("level_window_ms=5", "0 (no level events) or at least 20"),
        ("port=9000", "the benchmark sets it"),
        ("KAFKA_BOOTSTRAP_SERVERS=elsewhere:9092", "the benchmark sets it"),
    ],
)
def test_a_set_option_that_is_no_setting_or_a_bad_value_stops_the_bench_before_it_starts(pair: str, says: str) -> None:
    done = CliRunner().invoke(main, ["bench", "load", "--set", pair, "--json"])
    assert done.exit_code == 2 and done.stdout == ""
    assert "--set" in done.stderr and says in done.stderr


def test_a_refused_load_session_is_an_error_and_a_loss_in_strict_json_not_a_traceback() -> None:
    import asyncio

    from moodstream.broker.embedded import free_port
    from moodstream.cli.bench.load import LoadOptions, SessionStats, one_session, passes, summarise

    stats = SessionStats()
    url = f"ws://127.0.0.1:{free_port()}/ws/analyze"  # nothing listens: refused as a full gateway would refuse
    asyncio.run(one_session(url, b"\0" * 640, LoadOptions(duration_s=1.0), 0.0, stats))
    result = summarise(1, 1.0, [stats])
    assert result["lost"] == 1 and result["utterances"] == 0
    assert [code.split(":")[0] for code in result["errors"]] == ["refused"]
    assert result["e2e_ms_p95"] is None and not passes(result, 1200.0, 100.0)
    json.dumps(result, allow_nan=False)  # a run without results still prints strict JSON (no NaN)
