"""deploy/Dockerfile read the way hadolint and a reviewer read it (no container engine
runs here: the image is checked offline, its build is not run)."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import tomllib

import pytest

from tests.deploy.tools import DEPLOY, ROOT, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def test_hadolint_finds_nothing():
    """hadolint (every rule, warnings included) passes."""
    done = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_runtime_stage_is_slim_non_root_and_has_no_compiler():
    """Two stages; the last runs as a numeric non-root user, with no apt installs
    (the compilers stay in the builder), a HEALTHCHECK on /healthz and the gateway as PID 1."""
    builder, runtime = stages()
    assert "build-essential" in " ".join(builder)
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert base.endswith("-slim-bookworm")
    assert builder[0].startswith("FROM ${PYTHON_IMAGE} AS builder")
    assert runtime[0] == "FROM ${PYTHON_IMAGE} AS runtime"
    text = "\n".join(runtime)
    assert "apt-get install" not in text and "build-essential" not in text
    (user,) = [line for line in runtime if line.startswith("USER ")]
    assert user.split()[1].split(":")[0].isdigit() and not user.split()[1].startswith("0")
    (health,) = [line for line in runtime if line.startswith("HEALTHCHECK ")]
    assert "/healthz" in health
    assert 'ENTRYPOINT ["gateway"]' in text and 'CMD ["serve"]' in text


def test_offline_assets_are_checked_at_build_time():
    """The runtime stage proves, with no network, that both tiktoken encodings and
    litellm's price table are inside the image; litellm never fetches the table."""
    text = "\n".join(stages()[1])
    assert "RUN --network=none" in text
    assert "cl100k_base" in text and "o200k_base" in text
    assert "model_prices_and_context_window_backup.json" in text
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in text


def test_the_build_offline_check_passes_here_without_network():
    """The same check the build runs, on this environment's installed packages, in a
    network namespace of its own (no network at all) where `unshare` is allowed."""
    (step,) = [line for line in stages()[1] if line.startswith("RUN --network=none")]
    code = step.split('python -c "', 1)[1].rsplit('"', 1)[0]
    isolate = ["unshare", "-n"] if _can_unshare_network() else []
    done = subprocess.run(
        [*isolate, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def _can_unshare_network() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], check=False, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_build_context_excludes_what_the_image_does_not_need():
    """The Dockerfile's own .dockerignore lets in only the package, its metadata and the
    example policies (no .venv, tests, databases or .git)."""
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and not line.startswith("#")]
    assert ignore[0] == "*"  # everything is out unless let in below
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "gateway/", "migrations/", "policies/"}


def test_the_builder_copies_everything_the_wheel_is_built_from():
    """What pyproject.toml packs into the wheel (packages and force-includes) is copied
    into the builder stage and let through the .dockerignore: a missing folder fails the
    image build at `pip install .` (migrations/ once did)."""
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    target = wheel["targets"]["wheel"]
    sources = [*target["packages"], *target.get("force-include", {})]
    builder, _ = stages()
    copied = {line.split()[1] for line in builder if line.startswith("COPY ")}
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for source in sources:
        assert source in copied and source in allowed, source


def healthcheck_code() -> str:
    """The Python the HEALTHCHECK runs (its CMD's exec form: python -c CODE)."""
    _, runtime = stages()
    (health,) = [line for line in runtime if line.startswith("HEALTHCHECK ")]
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    return str(command[2])


@pytest.mark.parametrize(
    ("gateway_host", "listen_on"),
    [(None, "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")],
)
def test_the_healthcheck_asks_where_the_gateway_listens(gateway_host, listen_on):
    """Loopback when the gateway listens everywhere (or by default); the address itself
    when GATEWAY_HOST names one (127.0.0.1 would find nothing there)."""

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer((listen_on, 0), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"PATH": os.environ["PATH"], "GATEWAY_PORT": str(server.server_address[1])}
    if gateway_host is not None:
        env["GATEWAY_HOST"] = gateway_host
    try:
        done = subprocess.run(
            [sys.executable, "-c", healthcheck_code()], env=env, timeout=10, check=False
        )
        assert done.returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    refused = subprocess.run(  # nothing listening: the check fails
        [sys.executable, "-c", healthcheck_code()], env=env, capture_output=True, timeout=10
    )
    assert refused.returncode != 0
