"""Policy secret references and upstream hosts, as an operator and an admin meet them.

`${VAR}` resolves only from names GATEWAY_SECRET_ENV_ALLOW allows and never a GATEWAY_*
setting; an api_base may not point at cloud metadata; the refusal is the same from
`gateway policy check` (file:line and field) and from the admin API (400).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.request import urlopen

import aiohttp
import pytest

from tests.support.admin import Admin
from tests.support.gateway import running_gateway
from tests.support.processes import free_port
from tests.support.processes import run_gateway as run
from tests.support.serving import serve_process
from tests.support.upstream import MockUpstream

LEAKY = """\
providers:
  demo: {type: mock}
  leak:
    type: openai-compatible
    api_base: "http://collector.example/v1"
    api_key: "${GATEWAY_DATABASE_URL}"
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""

MOCK_ONLY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""

METADATA = """\
providers:
  imds: {type: openai-compatible, api_base: "http://169.254.169.254/latest/meta-data"}
models:
  m: {deployments: [{provider: imds, model: x}]}
teams:
  demo: {models: ["*"]}
"""

UPSTREAM = """\
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "{key}"}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
teams:
  demo: {{models: ["*"]}}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def write_bundle(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "bundle.yaml").write_text(text)
    return folder


def test_policy_check_refuses_a_gateway_setting_naming_file_line_and_field(tmp_path: Path) -> None:
    """`policy check` on a bundle reading GATEWAY_DATABASE_URL exits 1 at its file:line."""
    folder = write_bundle(tmp_path / "policies", LEAKY)
    database_url = f"sqlite+aiosqlite:///{tmp_path}/private.db"
    result = run(
        "policy", "check", "policies", cwd=tmp_path, env={"GATEWAY_DATABASE_URL": database_url}
    )
    assert result.returncode == 1
    assert (
        "policies/bundle.yaml:6: providers.leak.api_key: ${GATEWAY_DATABASE_URL} is refused: "
        "the gateway's own GATEWAY_* settings are never exposed"
    ) in result.stderr
    assert database_url not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert folder.exists()


def test_policy_check_refuses_a_metadata_api_base(tmp_path: Path) -> None:
    write_bundle(tmp_path / "policies", METADATA)
    result = run("policy", "check", "policies", cwd=tmp_path)
    assert result.returncode == 1
    assert "policies/bundle.yaml:2: providers.imds.api_base: host 169.254.169.254" in result.stderr
    assert "GATEWAY_UPSTREAM_ALLOW" in result.stderr
    allowed = run(
        "policy",
        "check",
        "policies",
        cwd=tmp_path,
        env={"GATEWAY_UPSTREAM_ALLOW": "169.254.169.254"},
    )
    assert allowed.returncode == 0, allowed.stderr


def test_policy_check_refuses_an_api_base_outside_the_allow_list(tmp_path: Path) -> None:
    write_bundle(tmp_path / "policies", LEAKY.replace("${GATEWAY_DATABASE_URL}", "${LEAK_KEY}"))
    result = run(
        "policy",
        "check",
        "policies",
        cwd=tmp_path,
        env={"GATEWAY_UPSTREAM_ALLOW": "api.openai.com", "LEAK_KEY": "k"},
    )
    assert result.returncode == 1
    assert "providers.leak.api_base: host collector.example is not in GATEWAY_UPSTREAM_ALLOW" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_SECRET_ENV_ALLOW", "OPENAI KEY"),
        ("GATEWAY_SECRET_FILE_DIRS", "run/secrets"),
        ("GATEWAY_UPSTREAM_ALLOW", "https://api.openai.com"),
        ("GATEWAY_TOKEN_LEEWAY_S", "9999"),
        ("GATEWAY_TOKEN_LEEWAY_S", "soon"),
    ],
)
def test_serve_refuses_a_bad_exposure_setting_in_one_line(
    tmp_path: Path, name: str, value: str
) -> None:
    """A bad value is one `error:` line naming the variable and exit 2, like other settings."""
    result = run("serve", "--port", str(free_port()), cwd=tmp_path, env={name: value}, timeout=30)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {name}")


async def test_admin_put_with_a_gateway_setting_reference_is_400(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """PUT /admin/policy refuses the same reference with 400 and its field; v1 stays."""
    async with running_gateway(tmp_path, MOCK_ONLY) as gw:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        _, running = await admin.call("GET", "/admin/policy")
        bundle = running["bundle"]
        bundle["providers"]["leak"] = {
            "type": "openai-compatible",
            "api_base": "http://collector.example/v1",
            "api_key": "${GATEWAY_DATABASE_URL}",
        }
        status, answer = await admin.call(
            "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
        )
        assert status == 400, answer
        (error,) = answer["error"]["errors"]
        assert error["field"] == "providers.leak.api_key"
        assert "GATEWAY_* settings are never exposed" in error["message"]
        assert gw.settings.database_url not in str(answer)
        bundle["providers"]["leak"] = {
            "type": "openai-compatible",
            "api_base": "http://169.254.169.254/v1",
        }
        status, answer = await admin.call(
            "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
        )
        assert status == 400, answer
        assert answer["error"]["errors"][0]["field"] == "providers.leak.api_base"
        _, running = await admin.call("GET", "/admin/policy")
        assert running["version"] == 1


async def test_an_allowed_reference_reaches_the_upstream(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`${UPSTREAM_API_KEY}` resolves; the upstream sees the key as its bearer."""
    monkeypatch.setenv("UPSTREAM_API_KEY", "sk-from-env")
    async with (
        MockUpstream(api_key="sk-from-env") as up,
        running_gateway(
            tmp_path, UPSTREAM.format(base=up.base_url, key="${UPSTREAM_API_KEY}")
        ) as gw,
    ):
        client = await gw.openai()
        reply = await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert reply.choices[0].message.content
        assert up.requests[-1].headers["authorization"] == "Bearer sk-from-env"


async def test_a_mounted_secret_file_reaches_the_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`${file:/…}` under GATEWAY_SECRET_FILE_DIRS is read at load; its final newline dropped."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "upstream").write_text("sk-from-file\n")
    monkeypatch.setenv("GATEWAY_SECRET_FILE_DIRS", str(secrets))
    key = f"${{file:{secrets}/upstream}}"
    async with (
        MockUpstream(api_key="sk-from-file") as up,
        running_gateway(tmp_path, UPSTREAM.format(base=up.base_url, key=key)) as gw,
    ):
        client = await gw.openai()
        await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert up.requests[-1].headers["authorization"] == "Bearer sk-from-file"


FILE_KEYED = """\
providers:
  sec: {{type: openai, api_base: "https://api.example.com/v1", api_key: "${{file:{path}}}"}}
models:
  m: {{deployments: [{{provider: sec, model: gpt-4o}}]}}
teams:
  demo: {{models: ["*"]}}
"""


def test_a_secret_file_this_host_lacks_is_a_warning_for_check_diff_and_apply(
    tmp_path: Path,
) -> None:
    """Like an unset `${VAR}`: the file is on the gateways' hosts, not the laptop or CI job."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    absent = secrets / "openai"
    write_bundle(tmp_path / "policies", FILE_KEYED.format(path=absent))
    env = {"GATEWAY_SECRET_FILE_DIRS": str(secrets)}
    assert run("migrate", cwd=tmp_path, env=env).returncode == 0
    for command in ("check", "diff", "apply"):
        result = run("policy", command, "policies", cwd=tmp_path, env=env)
        assert result.returncode == 0, (command, result.stderr)
        assert f"warning: secret file {absent} does not exist here" in result.stderr


async def test_a_server_lacking_a_secret_file_refuses_it_as_a_missing_variable(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUT /admin/policy: 400 naming the field, as for a `${VAR}` the server lacks."""
    monkeypatch.setenv("GATEWAY_SECRET_FILE_DIRS", str(tmp_path))
    async with running_gateway(tmp_path, MOCK_ONLY) as gw:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        _, running = await admin.call("GET", "/admin/policy")
        bundle = running["bundle"]
        for key, says in (
            (f"${{file:{tmp_path}/absent}}", "No such file or directory"),
            ("${ABSENT_PROBE_API_KEY}", "environment variable ABSENT_PROBE_API_KEY is not set"),
        ):
            bundle["providers"]["sec"] = {"type": "openai", "api_key": key}
            status, answer = await admin.call(
                "PUT", "/admin/policy", {"bundle": bundle, "base_version": 1}
            )
            assert status == 400, answer
            (error,) = answer["error"]["errors"]
            assert error["field"] == "providers.sec.api_key" and says in error["message"]


def test_serve_refuses_an_api_base_at_its_own_port_and_check_sees_the_flag(
    tmp_path: Path,
) -> None:
    """`serve --port P` refuses a provider at 127.0.0.1:P (a loop), however GATEWAY_PORT is set."""
    port = free_port()
    loop = (
        f'providers:\n  me: {{type: openai-compatible, api_base: "http://127.0.0.1:{port}/v1"}}\n'
    )
    write_bundle(tmp_path / "policies", loop)
    result = run("serve", "--port", str(port), cwd=tmp_path, env={"GATEWAY_PORT": "8080"})
    assert result.returncode == 1
    assert f"providers.me.api_base: 127.0.0.1:{port} is the gateway's own listener" in (
        result.stderr
    )
    checked = run("policy", "check", "policies", cwd=tmp_path, env={"GATEWAY_PORT": "8080"})
    assert checked.returncode == 0, checked.stderr  # another port: an ordinary local server


DISGUISED_METADATA = [
    "http://169\u3002254\u3002169\u3002254/v1",  # ideographic full stops
    "http://\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14/v1",
    "http://\uff4d\uff45\uff54\uff41\uff44\uff41\uff54\uff41.google.internal/v1",
    "http://169\uff0e254\uff0e169\uff0e254/v1",  # full-width full stops
    "http://[64:ff9b::a9fe:a9fe]/v1",  # NAT64
    "http://[2002:a9fe:a9fe::]/v1",  # 6to4
    "http://[::169.254.169.254]/v1",  # IPv4-compatible
]


def test_policy_check_refuses_metadata_hosts_in_disguise(tmp_path: Path) -> None:
    """Look-alikes the HTTP client folds to 169.254.169.254, and IPv6 forms embedding it."""
    providers = "".join(
        f'  p{i}: {{type: openai-compatible, api_base: "{url}"}}\n'
        for i, url in enumerate(DISGUISED_METADATA)
    )
    text = f"providers:\n{providers}models:\n  m: {{deployments: [{{provider: p0, model: x}}]}}\n"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(text, encoding="utf-8")
    result = run("policy", "check", "policies", cwd=tmp_path)
    assert result.returncode == 1
    for i in range(len(DISGUISED_METADATA)):
        assert f"policies/bundle.yaml:{i + 2}: providers.p{i}.api_base: " in result.stderr


async def test_admin_put_refuses_metadata_hosts_in_disguise(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running_gateway(tmp_path, MOCK_ONLY) as gw:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        _, running = await admin.call("GET", "/admin/policy")
        bundle = running["bundle"]
        for url in DISGUISED_METADATA:
            bundle["providers"]["imds"] = {"type": "openai-compatible", "api_base": url}
            status, answer = await admin.call(
                "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
            )
            assert status == 400, (url, answer)
            (error,) = answer["error"]["errors"]
            assert error["field"] == "providers.imds.api_base"
        _, running = await admin.call("GET", "/admin/policy")
        assert running["version"] == 1


def test_serve_refuses_an_empty_key_variable_and_check_warns(tmp_path: Path) -> None:
    """compose's `OPENAI_API_KEY: ${OPENAI_API_KEY:-}` sets an empty value when the operator
    forgot the key: `serve` refuses it as it refuses an unset one (file, line, field), not
    a ready gateway sending every call an empty key; `policy check`, run where keys may
    not be, warns."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(
        MOCK_ONLY.replace(
            "  demo: {type: mock}\n",
            '  demo: {type: mock}\n  up: {type: openai, api_key: "${EMPTY_PROBE_API_KEY}"}\n',
            1,
        )
    )
    env = {"EMPTY_PROBE_API_KEY": ""}
    served = run("serve", "--port", str(free_port()), cwd=tmp_path, env=env, timeout=30)
    assert served.returncode == 1, served.stderr
    assert "providers.up.api_key: environment variable EMPTY_PROBE_API_KEY is empty" in (
        served.stderr
    )
    checked = run("policy", "check", "policies", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "EMPTY_PROBE_API_KEY is not set here" in checked.stderr


@pytest.mark.parametrize("which", ["port", "admin_port"])
def test_policy_apply_refuses_an_api_base_at_the_running_servers_listener(
    tmp_path: Path, which: str
) -> None:
    """`gateway policy apply` from a shell that does not know the server's port (no
    GATEWAY_PORT: its default is 8080) refuses an api_base at the listener (or the admin
    listener) the server on this database recorded, as the server's admin API does;
    the running version stays, and the server stays ready."""
    admin_port = free_port()
    write_bundle(tmp_path / "policies", MOCK_ONLY)
    with serve_process(
        tmp_path, args=("--admin-port", str(admin_port)), port_as_flag=True
    ) as served:
        target = served.port if which == "port" else admin_port
        loop = MOCK_ONLY.replace(
            "  demo: {type: mock}\n",
            f'  demo: {{type: mock}}\n  me: {{type: openai-compatible, api_base: "http://127.0.0.1:{target}/v1"}}\n',
        )
        write_bundle(tmp_path / "loop", loop)
        applied = run("policy", "apply", "loop", cwd=tmp_path)
        assert applied.returncode == 1, applied.stdout
        assert f"127.0.0.1:{target} is the gateway's own listener" in applied.stderr
        history = run("policy", "history", "--json", cwd=tmp_path)
        assert history.returncode == 0 and len(json.loads(history.stdout)) == 1
        assert urlopen(f"{served.origin}/readyz").status == 200
    # Another port on the same host is an ordinary local server.
    other = MOCK_ONLY.replace(
        "  demo: {type: mock}\n",
        f'  demo: {{type: mock}}\n  up: {{type: openai-compatible, api_base: "http://127.0.0.1:{free_port()}/v1"}}\n',
    )
    write_bundle(tmp_path / "other", other)
    assert run("policy", "apply", "other", cwd=tmp_path).returncode == 0
