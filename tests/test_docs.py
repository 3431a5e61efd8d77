"""The README documents what the code does."""

from __future__ import annotations

from pathlib import Path

from moodstream.settings import settings_table
from schemas.errors import ALL_ERRORS
from schemas.topics import ALL_TOPICS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_configuration_table_matches_the_settings() -> None:
    assert settings_table() in README, "README's configuration table is stale: paste `moodstream config`"


def test_readme_lists_every_topic_and_error_code() -> None:
    for spec in ALL_TOPICS:
        assert f"`{spec.name}`" in README
    for error in ALL_ERRORS:
        assert f"`{error.code}`" in README


def test_ci_runs_the_readme_test_command() -> None:
    assert ".ci/run" in README
    assert "pytest" in (Path(__file__).parent.parent / ".ci" / "run").read_text()
