"""deploy/compose.yaml as `docker compose` reads it: two gateway replicas over one
PostgreSQL, one Redis and an OpenTelemetry collector, wired by GATEWAY_* settings that
the gateway really reads, migrations run once before the replicas start."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from gateway.settings import load_settings
from tests.deploy.tools import DEPLOY, ROOT

COMPOSE = DEPLOY / "compose.yaml"
REPLICAS = ("gateway-1", "gateway-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # YAML merge keys (<<) resolved


def resolved(value: str) -> str:
    """A compose value with ${VAR:-default} / ${VAR:?message} as compose fills them with
    POSTGRES_PASSWORD=secret set and nothing else."""

    def fill(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if name == "POSTGRES_PASSWORD":
            return "secret"
        return rest if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", fill, value)


def test_services_and_replicas(compose):
    """Two replicas, PostgreSQL, Redis, a collector and a one-shot migration."""
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "otel-collector",
        "migrate",
        *REPLICAS,
    }
    for name in REPLICAS:
        service = compose["services"][name]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (DEPLOY / ".." / service["build"]["dockerfile"]).resolve().is_file()


def test_replicas_wait_for_migration_and_never_migrate_themselves(compose):
    """The replicas start after `gateway migrate` exited 0, with migrate-on-start off."""
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in REPLICAS:
        service = services[name]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["environment"]["GATEWAY_MIGRATE_ON_START"] == "false"
        assert service["command"][0] == "serve"


def test_the_environment_is_one_the_gateway_accepts(compose):
    """Each replica's GATEWAY_* settings load with the gateway's own loader and point at
    the compose services by name."""
    services = compose["services"]
    env = {k: resolved(str(v)) for k, v in services["gateway-1"]["environment"].items()}
    settings = load_settings(env)
    assert settings.database_url.startswith("postgresql+asyncpg://gateway:secret@postgres:5432/")
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.otlp_endpoint is not None and "otel-collector:4318" in settings.otlp_endpoint
    assert str(settings.policy_dir) == "/etc/gateway/policies"
    assert settings.issuer_url == "http://localhost:8081"
    assert not settings.migrate_on_start
    assert services["gateway-1"]["environment"] == services["gateway-2"]["environment"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )


def test_policy_folder_is_mounted_read_only(compose):
    """The repository's policies/ folder is the replicas' GATEWAY_POLICY_DIR, read-only."""
    for name in REPLICAS:
        volume = compose["services"][name]["volumes"][0]
        source, target, mode = volume.split(":")
        assert (DEPLOY / source).resolve() == (ROOT / "policies").resolve()
        assert target == compose["services"][name]["environment"]["GATEWAY_POLICY_DIR"]
        assert mode == "ro"


def test_admin_plane_is_published_on_loopback_only(compose):
    """Each replica's admin listener is published on 127.0.0.1 only; the teams' port on all."""
    for name in REPLICAS:
        service = compose["services"][name]
        assert service["command"] == ["serve", "--admin-port", "9090"]
        teams, admin = service["ports"]
        assert teams.endswith(":8080") and not teams.startswith("127.0.0.1")
        assert admin.startswith("127.0.0.1:") and admin.endswith(":9090")


def test_replicas_are_hardened_and_drain_before_kill(compose):
    """Read-only root, no capabilities, no privilege gain; compose waits longer than the
    drain grace before SIGKILL."""
    for name in REPLICAS:
        service = compose["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        grace = int(service["environment"]["GATEWAY_DRAIN_GRACE_S"])
        assert int(service["stop_grace_period"].removesuffix("s")) > grace


def test_the_ledger_spool_is_on_a_named_volume(compose):
    """The root filesystem is read-only: GATEWAY_LEDGER_SPOOL_DIR is a named volume,
    kept across restarts so a replica replays what a dead one spooled."""
    for name in REPLICAS:
        service = compose["services"][name]
        spool = service["environment"]["GATEWAY_LEDGER_SPOOL_DIR"]
        mounts = [v for v in service["volumes"] if v.split(":")[1] == spool]
        assert len(mounts) == 1 and not mounts[0].endswith(":ro")
        assert mounts[0].split(":")[0] in compose["volumes"]


def test_collector_config_receives_otlp_and_exports(compose):
    """The collector's config file exists, receives OTLP on 4317/4318 and has a traces
    pipeline from that receiver."""
    collector = compose["services"]["otel-collector"]
    (volume,) = collector["volumes"]
    config = yaml.safe_load((DEPLOY / volume.split(":")[0]).read_text())
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert set(traces["exporters"]) <= set(config["exporters"]) | set(config["connectors"])


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode,
    reason="no docker compose here: the file is checked by the tests above",
)
def test_docker_compose_config_accepts_it():
    """`docker compose config` parses and interpolates the file."""
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"POSTGRES_PASSWORD": "secret", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr


def test_the_header_points_at_a_readme_section_that_exists():
    """The header's `See README.md, "SECTION", **PARAGRAPH**` names a real `## SECTION`
    with a **PARAGRAPH** in it (it once named a section that did not exist)."""
    header = COMPOSE.read_text().split("\n\n", 1)[0]
    match = re.search(r'README\.md, "([^"]+)", \*\*([^*]+)\*\*', header.replace("\n# ", " "))
    assert match, header
    section, paragraph = match.groups()
    readme = (ROOT / "README.md").read_text()
    body = readme.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    assert f"**{paragraph}**" in body


def test_no_service_moves_the_port_on_the_command_line(compose):
    """The image's HEALTHCHECK reads GATEWAY_HOST / GATEWAY_PORT only: a `--port` or
    `--host` in a command would leave it asking the old address (an unhealthy replica)."""
    for name, service in compose["services"].items():
        command = service.get("command") or []
        assert not any(
            arg in ("--port", "--host") or arg.startswith(("--port=", "--host=")) for arg in command
        ), name


COMPOSE_CHECK = DEPLOY / "offline" / "compose-check.sh"


def test_compose_check_says_what_it_changes_and_keeps_to_its_own_podman_config():
    """deploy/offline/compose-check.sh --plan prints what it would install and change and
    exits before doing any of it; its podman settings go to a private file it points
    podman at (CONTAINERS_CONF), never the host's /etc/containers/containers.conf."""
    text = COMPOSE_CHECK.read_text()
    assert not re.search(r">>?\s*/etc/containers", text)
    assert "export CONTAINERS_CONF=" in text
    plan_exit = text.index('[ "${1:-}" = --plan ] && exit 0')
    for step in ("apt-get install", "pip install", "debootstrap --", "podman build", "mkdir"):
        assert text.index(step) > plan_exit, step
    done = subprocess.run(
        ["bash", str(COMPOSE_CHECK), "--plan"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_COMPOSE_CHECK_STATE": "/nonexistent/state"},
    )
    assert done.returncode == 0, done.stderr
    for item in ("apt packages:", "podman-compose:", "/nonexistent/state/containers.conf"):
        assert item in done.stdout, item
    assert "/etc/containers is not touched" in done.stdout
