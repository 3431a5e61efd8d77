"""docker-compose.yml is well formed and every moodstream command it runs exists (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from moodstream.cli.main import main

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
    history = services["store"]["environment"]["MOODSTREAM_HISTORY_DB"]
    assert history.startswith("postgresql://") and "@postgres:5432/" in history  # the compose database
    assert services["store"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dockerfile_is_slim_non_root_and_has_gateway_and_worker_targets() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line.split() for line in text.splitlines() if line.startswith("FROM ")]
    assert all(stage[1] == "python:3.11-slim" for stage in stages if stage[1] != "runtime")
    assert {stage[-1] for stage in stages} >= {"build", "runtime", "gateway", "worker"}
    final = text[text.index("AS runtime") :]
    assert "USER moodstream" in final and "OMP_NUM_THREADS=1" in final
    assert "torch" not in final and "gcc" not in final and "build-essential" not in final


def test_cloud_run_service_uses_real_settings_routes_and_commands() -> None:
    from moodstream.settings import Settings

    service = yaml.safe_load((ROOT / "deploy" / "cloudrun" / "gateway.yaml").read_text())
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["run.googleapis.com/cpu-throttling"] == "false"
    assert annotations["run.googleapis.com/startup-cpu-boost"] == "true"
    assert int(annotations["autoscaling.knative.dev/minScale"]) >= 1
    (container,) = template["spec"]["containers"]
    assert container["args"][0] in main.commands
    env = {item["name"]: item.get("value") for item in container["env"]}
    known = {f"MOODSTREAM_{name.upper()}" for name in Settings.model_fields} | {"KAFKA_BOOTSTRAP_SERVERS"}
    assert set(env) <= known, set(env) - known
    assert int(env["MOODSTREAM_MAX_SESSIONS"]) == template["spec"]["containerConcurrency"]
    port = container["ports"][0]["containerPort"]
    assert int(env["MOODSTREAM_PORT"]) == port
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}


def test_sasl_ssl_settings_reach_both_kafka_clients(tmp_path: Path) -> None:
    import certifi  # any CA bundle will do for parsing
    import faust
    from confluent_kafka import Producer

    from moodstream.processors.stages.worker import faust_credentials
    from moodstream.settings import Settings

    settings = Settings(
        kafka_bootstrap_servers="broker-1.example:9093,broker-2.example:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="moodstream",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=certifi.where(),
    )
    config = settings.kafka_config()
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.mechanism"] == "SCRAM-SHA-512"
    Producer(config | {"socket.connection.setup.timeout.ms": 1000}).flush(0)  # librdkafka accepts every key
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.ssl_context is not None
