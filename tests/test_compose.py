"""docker-compose.yml cannot be run here (no Docker engine), so it is checked by parsing it
and by the compose client's own `config` validation."""

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def _compose_command() -> list[str]:
    probe = (
        subprocess.run(["docker", "compose", "version"], capture_output=True)
        if shutil.which("docker")
        else None
    )
    if probe is not None and probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise AssertionError(
        "neither `docker compose` nor `docker-compose` is installed (scripts/test installs it)"
    )


def test_compose_config_validates():
    env = {"DISPATCH_SECRET_KEY": "compose-check", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    result = subprocess.run(
        [*_compose_command(), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_the_stack_and_runs_the_documented_commands():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"redis", "postgres", "mailpit", "web", "worker", "beat", "flower"} <= set(services)
    assert services["worker"]["command"][:4] == ["celery", "-A", "worker", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "worker", "beat"]
    assert services["web"]["command"][:2] == ["dispatch", "web"]
    env = services["worker"]["environment"]
    # Redis by default; .env's DISPATCH_BROKER_URL may name the RabbitMQ service instead
    assert env["DISPATCH_BROKER_URL"] == "${DISPATCH_BROKER_URL:-redis://redis:6379/0}"
    assert env["DISPATCH_REDIS_URL"].startswith("redis://")  # the rate limiter stays on Redis
    assert env["DISPATCH_DATABASE_URL"].startswith("postgresql://")


def test_compose_offers_rabbitmq_as_the_broker():
    """RabbitMQ is an opt-in profile; with the profile and DISPATCH_BROKER_URL set (in .env),
    every app service uses it as the broker and Redis still for the rate limiter."""
    spec = yaml.safe_load(COMPOSE.read_text())
    rabbit = spec["services"]["rabbitmq"]
    assert rabbit["profiles"] == ["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:")
    assert "ports" not in rabbit  # reached by the app services only
    assert rabbit["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${")
    assert "/var/lib/rabbitmq" in rabbit["volumes"][0]  # durable queues outlive a restart
    url = "amqp://dispatch:compose-check@rabbitmq:5672/dispatch"
    env = {
        "DISPATCH_SECRET_KEY": "compose-check",
        "RABBITMQ_PASSWORD": "compose-check",
        "DISPATCH_BROKER_URL": url,
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    base = [*_compose_command(), "-f", str(COMPOSE)]
    result = subprocess.run(
        [*base, "--profile", "rabbitmq", "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert "rabbitmq" in resolved
    for name in ("web", "worker", "beat"):
        assert resolved[name]["environment"]["DISPATCH_BROKER_URL"] == url
        assert resolved[name]["environment"]["DISPATCH_REDIS_URL"].startswith("redis://")


def test_compose_holds_no_literal_secret():
    spec = yaml.safe_load(COMPOSE.read_text())
    for name, service in spec["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "SECRET" in key or "PASSWORD" in key:
                assert str(value).startswith("${"), f"{name}.{key} must come from the environment"
