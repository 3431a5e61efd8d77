"""docker-compose.yml is well formed and every moodstream command it runs exists (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from moodstream.cli import main

ROOT = Path(__file__).parent.parent


def test_compose_services_run_real_cli_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "topics", "worker", "gateway"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on missing {dependency}"
        if service.get("build") == ".":
            command = service["command"]
            assert command[0] in main.commands, f"{name} runs unknown command {command[0]}"
            result = CliRunner().invoke(main, [*command, "--help"])
            assert result.exit_code == 0, (name, result.output)
            assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "worker" in services and "ports" not in services["worker"]  # scalable with --scale
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
