"""The README and docs/ document what the code does, and what they show runs as printed: the README's stream command
and Python snippet are executed against a real stack (its port put in for the README's 8000), every other
`moodstream …` command they show names a real command and options it has, the docs show no Python the suite does not
run, and every link points at a file that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from moodstream.schemas.errors import ALL_ERRORS
from moodstream.schemas.topics import ALL_TOPICS
from moodstream.settings import settings_table
from tests.conftest import Stack

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in (ROOT / "docs").glob("*.md")}
README_URL = "ws://127.0.0.1:8000/ws/analyze"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_readme_is_a_front_page_that_links_every_doc() -> None:
    assert len(README.splitlines()) <= 200
    for name in DOCS:
        assert f"(docs/{name})" in README, f"README does not link docs/{name}"


def test_every_relative_link_points_at_a_file() -> None:
    pages = {ROOT / "README.md": README} | {ROOT / "docs" / name: text for name, text in DOCS.items()}
    for page, text in pages.items():
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


def test_configuration_doc_matches_the_settings() -> None:
    assert settings_table() in DOCS["configuration.md"], "docs/configuration.md is stale: paste `moodstream config`"


def test_docs_list_every_topic_and_error_code() -> None:
    for spec in ALL_TOPICS:
        assert f"`{spec.name}`" in DOCS["architecture.md"]
    for error in ALL_ERRORS:  # each row says exactly what the contract (and the tests of it) say
        assert f"| `{error.code}` | {error.close_code or '—'} | {error.meaning} |" in DOCS["protocol.md"], error.code


def test_ci_runs_the_readme_test_command() -> None:
    assert ".ci/run" in README
    assert "pytest" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_stream_command_prints_what_the_readme_shows(stack: Stack) -> None:
    [command] = [line for block in blocks(README, "bash") for line in block.splitlines() if " stream tests/" in line]
    args = command.split("#")[0].replace(README_URL, stack.ws).split()
    assert args[0] == ".venv/bin/moodstream"
    done = subprocess.run([str(ROOT / args[0]), *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [shown] = [block for block in blocks(README, "text") if "session ended" in block]
    utterance = re.compile(r"^\s+[\d.]+–[\d.]+ s\s+(negative|neutral|positive) [+-][\d.]+\s+text \w+ [\d.]+")
    printed = [line for line in done.stdout.splitlines() if utterance.match(line)]
    assert len(printed) == len([line for line in shown.splitlines() if utterance.match(line)])
    assert "arousal" in done.stdout and "session ended (client): 3 utterances" in done.stdout


def test_the_readme_python_snippet_runs_as_printed(stack: Stack) -> None:
    [snippet] = [block for block in blocks(README, "python") if "MoodstreamClient" in block]
    assert README_URL in snippet
    # -P: the checkout's folders are not importable from the working directory, only the installed namespace is
    done = subprocess.run([sys.executable, "-P", "-c", snippet.replace(README_URL, stack.ws)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.split()[0] in ("negative", "neutral", "positive") for line in lines)
    assert lines[0].rstrip("!.").endswith("Goodbye")  # the engine on this CPU may end it with "." (decision 0007)


def test_every_moodstream_command_the_docs_show_exists_with_its_options() -> None:
    """Each `moodstream …` line in the README and docs names a real command and only options it has (the long
    benchmarks are not run here; their names and options cannot go stale)."""
    import click

    from moodstream.cli.main import main

    shown = {m.group(1) for text in [README, *DOCS.values()]
             for m in re.finditer(r"`(?:\.venv/bin/)?(moodstream [^`]+)`", text)}  # fmt: skip
    stale = []
    for line in sorted(shown):
        words = line.replace("\\|", "|").replace("[", " ").replace("]", " ").split()[1:]
        command: click.Command = main
        while isinstance(command, click.Group) and words and words[0].split("|")[0] in command.commands:
            for alternative in words[0].split("|"):  # `bench load|capacity`: every one must exist
                if alternative not in command.commands:
                    stale.append(f"{line}: no command {alternative}")
            command, words = command.commands[words[0].split("|")[0]], words[1:]
        if isinstance(command, click.Group):
            if words and words[0] not in ("TOPIC",):
                stale.append(f"{line}: no command {words[0]}")
            continue
        options = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
        stale += [f"{line}: no option {word}" for word in words if word.startswith("--") and word not in options]
    assert stale == []


def test_the_docs_show_no_python_the_suite_does_not_run() -> None:
    assert [name for name, text in DOCS.items() if blocks(text, "python")] == []
