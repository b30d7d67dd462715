"""docker/: the compose file is valid and runs one service per worker item of its production."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hie.config.loader import load_production

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin), else Debian's ``docker-compose``; None when neither."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_runs_every_worker_item_of_its_production_and_the_infrastructure() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    production = load_production(DOCKER / "production.yaml")
    services = compose["services"]
    assert {"redis", "postgres", "gateway", "flower", "sink", "recovery", "viewer"} <= set(services)
    workers = {
        tuple(s["command"][1:]) for s in services.values() if s.get("command", [""])[0] == "worker"
    }
    expected = {
        ("/etc/hie/production.yaml", i.name)
        for i in production.items
        if production.host_class(i.name).kind != "service"
    }
    assert workers == expected
    assert services["recovery"]["command"] == ["recover", "/etc/hie/production.yaml"]
    assert "--basic-auth-file" in services["flower"]["command"]


def test_compose_is_safe_to_deploy_from() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    hie_services = {n: s for n, s in services.items() if s.get("image") == "hie:latest"}
    for name, service in hie_services.items():
        # A stop lets the attempt in hand finish (connect 5 s + response 30 s by default)
        grace = str(service["stop_grace_period"])
        assert grace.endswith("s") and int(grace[:-1]) > 35, name
        # No password or URL carrying one in an environment value: secrets are files
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key and "@" not in str(value), (name, key)
    # Each worker is healthy while its Celery node answers a ping over the broker
    for name, item in (("router", "Router"), ("adt-out", "ADT.Out"), ("oru-out", "ORU.Out")):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "inspect ping" in test and f"{item}@Demo." in test, name
    # The production is mounted read-only, not baked into the image; the secrets it names exist
    for name in ("gateway", "router", "oru-out", "recovery", "viewer", "flower"):
        mounts = {v.split(":")[1] for v in services[name]["volumes"] if v.endswith(":ro")}
        assert mounts == {"/etc/hie/production.yaml", "/etc/hie/rules.yaml"}, name
    assert "production.yaml" not in (DOCKER / "Dockerfile").read_text()
    for secret in compose["secrets"].values():
        assert (DOCKER / secret["file"]).is_file(), secret["file"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")


def test_dockerfile_installs_hie_on_python_311_slim() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert text.splitlines()[2].startswith("FROM python:3.11-slim")
    assert "pip install --no-cache-dir ." in text


@pytest.mark.skipif(
    _compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed"
)
def test_docker_compose_config_accepts_the_file() -> None:
    compose = _compose_command()
    assert compose is not None
    out = subprocess.run(
        [*compose, "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
