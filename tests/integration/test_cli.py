"""The `gateway` command as an operator runs it: real processes, real ports."""

import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import openai
import orjson
import pytest

from tests.support.processes import GATEWAY, free_port
from tests.support.processes import run_gateway as run


def wait_until_up(origin: str, process: subprocess.Popen, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{origin}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gateway did not come up")


def test_quickstart_serve_token_and_the_openai_sdk(tmp_path):
    """In an empty folder: `gateway serve` answers from the mock with a token from `gateway token`."""
    port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port)}
    server = subprocess.Popen(
        [GATEWAY, "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        origin = f"http://127.0.0.1:{port}"
        wait_until_up(origin, server)
        minted = run("token", "--team", "demo", cwd=tmp_path)
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip().splitlines()[-1]
        client = openai.OpenAI(base_url=f"{origin}/v1", api_key=lambda: token, max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        assert reply.choices[0].message.content == "This is the mock provider. You said: hello"
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        client.close()
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert (tmp_path / "policies" / "models.yaml").exists()
    assert (tmp_path / "gateway.db").exists()
    assert server.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a clean drain
    assert "Traceback" not in stderr
    assert token not in stderr  # tokens never reach the log


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers:\n  a: {type: mock\n", "bundle.yaml:3: YAML syntax error"),
        (
            "providers:\n  a: {type: mock, colour: red}\n",
            "bundle.yaml:2: providers.a.colour: unknown key",
        ),
        (
            'providers:\n  a: {type: openai, api_key: "${NOT_SET_ANYWHERE_API_KEY}"}\n',
            "bundle.yaml:2: providers.a.api_key: environment variable NOT_SET_ANYWHERE_API_KEY is not set",
        ),
    ],
    ids=["yaml-error", "unknown-key", "missing-env-var"],
)
def test_serve_refuses_a_broken_policy_with_file_and_line(tmp_path, text, expected):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(text)
    result = run("serve", "--port", str(free_port()), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    checked = run("policy", "check", "policies", cwd=tmp_path)
    if "is not set" in expected:  # `check` runs where the keys may not be: a warning there
        assert checked.returncode == 0 and "is not set here" in checked.stderr
        return
    assert checked.returncode == 1
    assert expected in checked.stderr


def test_policy_check_accepts_the_repository_example(tmp_path):
    repo = Path(__file__).parents[2]
    result = run("policy", "check", str(repo / "policies"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout


def test_policy_check_warns_of_a_usd_budget_over_an_unpriced_model(tmp_path):
    """Valid (exit 0), but the author hears that $0 spend does not use the budget up."""
    (tmp_path / "pol").mkdir()
    (tmp_path / "pol" / "p.yaml").write_text(
        "providers: {demo: {type: mock}}\n"
        "models: {small: {deployments: [{provider: demo, model: m}]}}\n"
        "teams: {a: {models: [small], budgets: [{period: month, usd: 10}]}}\n"
    )
    result = run("policy", "check", "pol", cwd=tmp_path)
    assert result.returncode == 0 and "is valid" in result.stdout
    assert "warning: team 'a' has a USD budget, but model 'small'" in result.stderr


def test_several_workers_without_redis_are_refused(tmp_path):
    result = run("serve", "--workers", "2", cwd=tmp_path, env={"GATEWAY_REDIS_URL": ""})
    assert result.returncode == 2
    assert "GATEWAY_REDIS_URL" in result.stderr


def test_migrate_is_idempotent(tmp_path):
    assert run("migrate", cwd=tmp_path).returncode == 0
    second = run("migrate", cwd=tmp_path)
    assert second.returncode == 0, second.stderr


def test_token_prints_only_the_token_on_the_last_line(tmp_path):
    shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    result = run(
        "token",
        "--team",
        "someone",
        "--scope",
        "gateway:invoke",
        "--scope",
        "gateway:admin",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    token = result.stdout.strip().splitlines()[-1]
    assert token.count(".") == 2 and " " not in token
    assert "not in the policy" in result.stderr


def test_token_refuses_an_unknown_scope_as_clients_create_does(tmp_path):
    """`token --scope gateway:bogus` mints nothing: exit 2 naming the scope, like `clients create`."""
    shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    assert run("migrate", cwd=tmp_path).returncode == 0
    args = ("--team", "demo", "--scope", "gateway:invoke", "--scope", "gateway:bogus")
    minted = run("token", *args, cwd=tmp_path)
    created = run("clients", "create", *args, cwd=tmp_path)
    for refused in (minted, created):
        assert refused.returncode == 2, refused.stderr
        assert refused.stdout == ""
        assert "Unknown scope 'gateway:bogus'; known scopes:" in refused.stderr
    assert minted.stderr.splitlines()[-1] == created.stderr.splitlines()[-1]


def test_policy_commands_need_no_provider_keys_but_keep_every_other_rule(tmp_path):
    """check, diff and apply run where the providers' keys are not (a laptop, CI), as
    terraform plan does: an allowed ${VAR} this shell lacks is a warning; each gateway
    resolves it from its own environment. A name the policy may not use is still an
    error, and `serve` itself still refuses a key it lacks (the test above)."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    keyed = (
        'providers:\n  a: {type: openai, api_key: "${NOT_SET_ANYWHERE_API_KEY}"}\n'
        "models:\n  m: {deployments: [{provider: a, model: gpt-4o}]}\n"
        'teams:\n  t: {models: ["m"]}\n'
    )
    (folder / "bundle.yaml").write_text(keyed)
    assert run("migrate", cwd=tmp_path).returncode == 0
    for command in (("policy", "check"), ("policy", "diff"), ("policy", "apply")):
        done = run(*command, str(folder), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "warning: environment variable NOT_SET_ANYWHERE_API_KEY is not set here" in (
            done.stderr
        )
    (folder / "bundle.yaml").write_text(keyed.replace("NOT_SET_ANYWHERE_API_KEY", "HOME"))
    refused = run("policy", "check", str(folder), cwd=tmp_path)
    assert refused.returncode == 1 and "HOME" in refused.stderr


def test_clients_create_works_before_the_first_serve(tmp_path):
    """After `migrate`, before the first `serve`, `clients create` registers (its
    unknown-team check has no running version to read yet): no traceback."""
    shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    assert run("migrate", cwd=tmp_path).returncode == 0
    created = run("clients", "create", "--team", "demo", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["team"] == "demo"
    assert "Traceback" not in created.stderr
    listed = run("clients", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr


def test_token_lifetime_is_bounded_by_the_gateways_token_ttl(tmp_path):
    """A rotated key verifies for GATEWAY_TOKEN_TTL_S after rotation, so no token outlives that."""
    shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    too_long = run("token", "--team", "demo", "--ttl", "3601", cwd=tmp_path)
    assert too_long.returncode == 2
    assert "GATEWAY_TOKEN_TTL_S (3600 s)" in too_long.stderr
    assert too_long.stdout == ""
    longer = run(
        "token", "--team", "demo", "--ttl", "7200", cwd=tmp_path,
        env={"GATEWAY_TOKEN_TTL_S": "7200"},
    )  # fmt: skip
    assert longer.returncode == 0, longer.stderr
    claims = orjson.loads(base64.urlsafe_b64decode(longer.stdout.split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 7200


SERVE_ONLY_OPENAI = """
import asyncio, sys
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream
from pathlib import Path

async def main():
    async with MockUpstream() as up:
        policy = (
            "providers:\\n  up: {type: openai-compatible, api_base: '%s'}\\n"
            "models:\\n  m: {deployments: [{provider: up, model: x}]}\\n"
            "teams:\\n  demo: {models: ['*']}\\n" % up.base_url
        )
        async with running_gateway(Path(sys.argv[1]), policy) as gw:
            client = await gw.openai()
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
            async for _ in stream:
                pass
    print("litellm" in sys.modules)

asyncio.run(main())
"""


def test_serving_only_openai_compatible_upstreams_never_imports_litellm(tmp_path):
    repo = Path(__file__).parents[2]
    result = subprocess.run(
        [sys.executable, "-c", SERVE_ONLY_OPENAI, str(tmp_path)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_token_warns_against_the_running_version_not_the_folder(tmp_path):
    """Once the database has a version, the warning follows it, not the files on disk."""
    shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    assert run("migrate", cwd=tmp_path).returncode == 0
    applied = run("policy", "apply", "policies", "--reason", "start", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    (tmp_path / "policies" / "teams.yaml").write_text("teams:\n  newcomers: {models: ['*']}\n")
    result = run("token", "--team", "newcomers", cwd=tmp_path)
    assert result.returncode == 0
    assert "not in the running policy version 1" in result.stderr
    assert "warning" not in run("token", "--team", "demo", cwd=tmp_path).stderr
