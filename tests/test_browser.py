"""The browser page in real headless Chromium: microphone (a fake device playing real speech) and file upload."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import pytest

from moodstream.cli.bench.wer import normalize
from moodstream.producers.audio import load_pcm16
from tests.conftest import Stack, write_call_wav

DATA = Path(__file__).parent / "data"
TRUTH = [normalize(p["text"]) for p in json.loads((DATA / "three_prompts.json").read_text())]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).parent.parent / "build" / "screenshots"
# Flags for a machine without network or GPU: no background fetches, no sandbox (root in CI containers).
QUIET = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip

if CHROMIUM is None:  # fail, never skip: the page is part of the product (`scripts/setup dev` installs chromium)
    raise RuntimeError("the browser test needs Debian's chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test prompts at 48 kHz stereo, as a microphone would deliver them, with a second of silence after."""
    import numpy as np

    pcm = np.frombuffer(load_pcm16(DATA / "three_prompts.wav", sample_rate=48_000), dtype="<i2")
    pcm = np.concatenate((pcm, np.zeros(48_000, dtype="<i2")))
    path = tmp_path_factory.mktemp("audio") / "speech48k.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(np.repeat(pcm, 2).tobytes())
    return path


CAPTION_LOG = """() => {
  window.captionLog = [];
  new MutationObserver(() => window.captionLog.push({
    text: document.getElementById("caption").textContent,
    finalShown: document.querySelector(`tr.utterance.final[data-seq="${captionSeq}"]`) !== null,
  })).observe(document.getElementById("caption"), { childList: true, subtree: true, characterData: true });
}"""
"""Records every change of the live caption and whether its utterance's final row was already on the page."""


def final_transcripts(page) -> list[str]:
    texts = page.eval_on_selector_all("tr.utterance.final", "rows => rows.map(r => r.dataset.seq + '|' + "
                                      "r.querySelector('.transcript').textContent)")  # fmt: skip
    ordered = sorted((int(t.split("|", 1)[0]), t.split("|", 1)[1]) for t in texts)
    return [normalize(text) for _seq, text in ordered]


def wait_for_three(page) -> list[str]:
    page.wait_for_function("document.querySelectorAll('tr.utterance.final').length >= 3", timeout=90_000)
    return final_transcripts(page)


@pytest.fixture(scope="module")
def call_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "call.wav"
    write_call_wav(path)
    return path


def test_microphone_and_file_upload_show_transcripts_and_sentiment(
    stack: Stack, speech_wav: Path, call_wav: Path
) -> None:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    fake_mic = ["--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={speech_wav}%noloop"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=QUIET + fake_mic)
        try:
            # Microphone granted: the page streams the fake device through its AudioWorklet. This context lets the
            # test evaluate its probes in the page (the page's CSP forbids eval); the two below run under the CSP.
            context = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
            context.grant_permissions(["microphone"], origin=stack.http)
            page = context.new_page()
            page.goto(stack.http)
            page.wait_for_selector("#ready.ok")
            page.evaluate(CAPTION_LOG)
            page.click("#mic-start")
            assert wait_for_three(page)[:3] == TRUTH
            captions = page.evaluate("window.captionLog")
            assert any(c["text"] and not c["finalShown"] for c in captions), captions  # words before the final
            labels = page.eval_on_selector_all("tr.utterance.final .fused-score", "e => e.map(x => x.textContent)")
            assert all(-1 <= float(score) <= 1 for score in labels)
            assert page.locator("#vad").text_content() in ("speaking", "silent")
            page.click("#stop")
            page.wait_for_selector("#notice:has-text('Session ended')", timeout=30_000)
            page.screenshot(path=str(SHOTS / "microphone.png"), full_page=True)
            context.close()

            # The same recording uploaded as a file: decoded and resampled in the page, streamed, then ended.
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            page = context.new_page()
            page.goto(stack.http)
            page.wait_for_selector("#ready.ok")
            page.set_input_files("#file", str(DATA / "three_prompts.wav"))
            page.wait_for_selector("#notice:has-text('Session ended')", timeout=90_000)
            assert final_transcripts(page) == TRUTH
            page.screenshot(path=str(SHOTS / "file.png"), full_page=True)
            context.close()

            # A stereo call uploaded: one party a channel, each row says whose words it holds.
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            page = context.new_page()
            page.goto(stack.http)
            page.wait_for_selector("#ready.ok")
            page.set_input_files("#file", str(call_wav))
            page.wait_for_selector("#notice:has-text('Session ended')", timeout=90_000)
            parties = page.eval_on_selector_all("tr.utterance.final .role", "e => e.map(x => x.textContent)")
            assert sorted(parties) == ["left", "left", "left", "right", "right"]
            assert "3 + 2 by channel" in page.locator("#notice").text_content()
            page.screenshot(path=str(SHOTS / "call.png"), full_page=True)
            context.close()

            # Microphone denied: a clear message, nothing sent.
            context = browser.new_context()
            page = context.new_page()
            page.goto(stack.http)
            page.click("#mic-start")
            page.wait_for_selector("#notice.error", timeout=10_000)
            assert "denied" in page.locator("#notice").text_content()
            assert not page.locator("#mic-start").is_disabled()
            context.close()
        finally:
            browser.close()
