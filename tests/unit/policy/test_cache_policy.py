"""`cache: {ttl_s, max_bytes}` on a team and on a model (gateway/policy/schema.py, compiled.py)."""

import subprocess
from pathlib import Path

import pytest

from gateway.cache.rules import effective_policy
from gateway.cache.stage import plan
from gateway.policy.compiled import CachePolicy
from gateway.policy.errors import PolicyInvalid
from gateway.policy.store import load_policy_dir
from tests.support.processes import GATEWAY

BUNDLE = """\
providers:
  demo: {type: mock}
models:
  chat: {deployments: [{provider: demo, model: m}]MODEL_CACHE}
  other: {deployments: [{provider: demo, model: m}]}
teams:
  search:
    models: ["*"]TEAM_CACHE
  plain: {models: ["*"]}
"""


def write(tmp_path: Path, *, team: str = "", model: str = "") -> Path:
    text = BUNDLE.replace("TEAM_CACHE", f"\n    cache: {team}" if team else "")
    text = text.replace("MODEL_CACHE", f", cache: {model}" if model else "")
    (tmp_path / "bundle.yaml").write_text(text)
    return tmp_path


def problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(directory, {})
    return [str(issue) for issue in caught.value.issues]


def test_the_cache_is_off_unless_a_policy_turns_it_on(tmp_path: Path) -> None:
    """A team and a model without `cache` compile to no cache policy at all."""
    policy = load_policy_dir(write(tmp_path), {})
    assert policy.teams["plain"].cache is None
    assert policy.models["chat"].cache is None
    assert effective_policy(policy.teams["plain"], policy.models["chat"]) is None


def test_a_team_cache_compiles_and_applies_to_its_models(tmp_path: Path) -> None:
    policy = load_policy_dir(write(tmp_path, team="{ttl_s: 3600, max_bytes: 268435456}"), {})
    assert policy.teams["search"].cache == CachePolicy(ttl_s=3600, max_bytes=268435456)
    assert effective_policy(policy.teams["search"], policy.models["other"]) == CachePolicy(
        3600, 268435456
    )
    assert effective_policy(policy.teams["plain"], policy.models["other"]) is None


def test_the_model_cache_wins_over_the_team_cache(tmp_path: Path) -> None:
    """A model's own setting applies to every team; the team's covers the other models."""
    policy = load_policy_dir(
        write(
            tmp_path,
            team="{ttl_s: 3600, max_bytes: 1000000}",
            model="{ttl_s: 60, max_bytes: 5000}",
        ),
        {},
    )
    assert effective_policy(policy.teams["search"], policy.models["chat"]) == CachePolicy(60, 5000)
    assert effective_policy(policy.teams["plain"], policy.models["chat"]) == CachePolicy(60, 5000)
    assert effective_policy(policy.teams["search"], policy.models["other"]) == CachePolicy(
        3600, 1000000
    )


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("{ttl_s: 0, max_bytes: 1000}", "teams.search.cache.ttl_s: Input should be greater than 0"),
        (
            "{ttl_s: -5, max_bytes: 1000}",
            "teams.search.cache.ttl_s: Input should be greater than 0",
        ),
        (
            "{ttl_s: 86401, max_bytes: 1000}",
            "teams.search.cache.ttl_s: Input should be less than or equal to 86400",
        ),
        (
            "{ttl_s: 1.5, max_bytes: 1000}",
            "teams.search.cache.ttl_s: Input should be a valid integer",
        ),
        (
            '{ttl_s: "60", max_bytes: 1000}',
            "teams.search.cache.ttl_s: Input should be a valid integer",
        ),
        (
            "{ttl_s: true, max_bytes: 1000}",
            "teams.search.cache.ttl_s: Input should be a valid integer",
        ),
        (
            "{ttl_s: 60, max_bytes: 0}",
            "teams.search.cache.max_bytes: Input should be greater than 0",
        ),
        (
            "{ttl_s: 60, max_bytes: 1073741825}",
            "teams.search.cache.max_bytes: Input should be less than or equal to 1073741824",
        ),
        ("{ttl_s: 60}", "teams.search.cache.max_bytes: required field is missing"),
        ("{ttl_s: 60, max_bytes: 10, size: 3}", "teams.search.cache.size: unknown key"),
    ],
)
def test_a_bad_team_cache_is_refused_at_its_line(
    tmp_path: Path, written: str, message: str
) -> None:
    found = problems(write(tmp_path, team=written))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/bundle.yaml:")
    assert message in found[0]


def test_a_bad_model_cache_is_refused_at_its_line(tmp_path: Path) -> None:
    found = problems(write(tmp_path, model="{ttl_s: 60, max_bytes: -1}"))
    assert found == [
        f"{tmp_path}/bundle.yaml:4: models.chat.cache.max_bytes: Input should be greater than 0"
    ]


def test_policy_check_names_file_and_line_of_a_bad_cache(tmp_path: Path) -> None:
    """`gateway policy check` prints file:line for a bad cache value and exits 1."""
    write(tmp_path, team="{ttl_s: 0, max_bytes: 1000}")
    done = subprocess.run(
        [GATEWAY, "policy", "check", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert f"{tmp_path}/bundle.yaml:9: teams.search.cache.ttl_s" in done.stderr
    assert "Traceback" not in done.stderr


def _key_under(tmp_path: Path, text: str) -> str | None:
    (tmp_path / "bundle.yaml").write_text(text)
    policy = load_policy_dir(tmp_path, {})
    found = plan(
        team=policy.teams["search"],
        route=policy.models["chat"],
        endpoint="chat",
        body={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
        cache_control=[],
    )
    assert found is not None and found.key is not None
    return found.key.digest


CHANGING = """\
providers:
  demo: {type: mock}
models:
  chat: {deployments: [{provider: demo, model: UPSTREAM}], price: {input_per_mtok: PRICE, output_per_mtok: 1}}
teams:
  search: {models: ["*"], guardrails: [g], cache: {ttl_s: 60, max_bytes: 100000}}
guardrails:
  g: {output: [{detector: email, action: ACTION}]}
"""


def test_a_policy_change_to_the_route_or_a_guardrail_makes_old_entries_unreachable(
    tmp_path: Path,
) -> None:
    """New deployment or edited guardrail rule: a new key. A new price: the same key."""

    def under(upstream: str = "m1", action: str = "redact", price: str = "1") -> str | None:
        text = CHANGING.replace("UPSTREAM", upstream).replace("ACTION", action)
        return _key_under(tmp_path, text.replace("PRICE", price))

    base = under()
    assert under() == base
    assert under(upstream="m2") != base
    assert under(action="block") != base
    assert under(price="7") == base
