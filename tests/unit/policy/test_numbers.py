"""Numbers in a policy are finite and strictly typed (gateway/policy/schema.py, candidate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.candidate import candidate_from_folder, candidate_from_raw
from gateway.policy.errors import PolicyInvalid

BUNDLE = """\
providers:
  demo: {type: mock}
models:
  m:
    deployments: [{provider: demo, model: mock-1, DEPLOYMENT}]
    MODEL
routing: {ROUTING}
teams:
  search:
    models: ["*"]
    TEAM
"""


def write(
    tmp_path: Path, *, deployment: str = "", model: str = "", routing: str = "", team: str = ""
) -> Path:
    text = (
        BUNDLE.replace("DEPLOYMENT", deployment or "weight: 1")
        .replace("MODEL", model)
        .replace("ROUTING", routing)
        .replace("TEAM", team)
    )
    (tmp_path / "bundle.yaml").write_text(text)
    return tmp_path


def problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        candidate_from_folder(directory, {})
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize(
    ("where", "text", "line", "field"),
    [
        ("team", "budgets: [{period: month, usd: .inf}]", 11, "teams.search.budgets[0].usd"),
        ("team", "budgets: [{period: day, usd: .nan}]", 11, "teams.search.budgets[0].usd"),
        ("deployment", "weight: .inf", 5, "models.m.deployments[0].weight"),
        ("routing", "timeout_s: .inf", 7, "routing.timeout_s"),
        ("routing", "cooldown_s: .inf", 7, "routing.cooldown_s"),
        ("routing", "attempt_timeout_s: .NaN", 7, "routing.attempt_timeout_s"),
        (
            "model",
            "price: {input_per_mtok: .inf, output_per_mtok: 1}",
            6,
            "models.m.price.input_per_mtok",
        ),
        ("model", "routing: {timeout_s: -.inf}", 6, "models.m.routing.timeout_s"),
    ],
)
def test_a_non_finite_number_is_refused_at_its_line(
    tmp_path: Path, where: str, text: str, line: int, field: str
) -> None:
    """`.inf`/`.nan` would be stored as null: a version that cannot load. Refused, located."""
    found = problems(write(tmp_path, **{where: text}))
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path}/bundle.yaml:{line}: {field}: ")
    assert "finite" in found[0]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("limits: {rpm: yes}", "teams.search.limits.rpm"),
        ("limits: {concurrency: on}", "teams.search.limits.concurrency"),
        ("per_user: {tpm: true}", "teams.search.per_user.tpm"),
        ("max_tokens_default: '512'", "teams.search.max_tokens_default"),
        ("budgets: [{period: day, tokens: 1.5}]", "teams.search.budgets[0].tokens"),
    ],
)
def test_a_boolean_or_text_where_an_integer_is_expected_is_refused(
    tmp_path: Path, text: str, field: str
) -> None:
    """YAML reads `yes`/`on` as true; `concurrency: on` must not become a limit of 1."""
    found = problems(write(tmp_path, team=text))
    assert len(found) == 1, found
    assert f"bundle.yaml:11: {field}: " in found[0]


def test_a_boolean_where_a_number_is_expected_is_refused(tmp_path: Path) -> None:
    found = problems(write(tmp_path, deployment="weight: true"))
    assert found and "models.m.deployments[0].weight" in found[0]


def test_integers_still_fill_number_fields(tmp_path: Path) -> None:
    candidate = candidate_from_folder(
        write(tmp_path, deployment="weight: 2", routing="timeout_s: 30", team="limits: {rpm: 60}"),
        {},
    )
    assert candidate.policy.models["m"].deployments[0].weight == 2
    assert candidate.policy.models["m"].routing.timeout_s == 30
    limits = candidate.policy.teams["search"].limits
    assert limits is not None and limits.rpm == 60


def test_what_is_stored_compiles_back_to_the_same_policy(tmp_path: Path) -> None:
    """A folder's candidate, stored as JSON and loaded again, compiles to an equal policy."""
    candidate = candidate_from_folder(
        write(tmp_path, model="price: {input_per_mtok: 2.5, output_per_mtok: 10}"), {}
    )
    again = candidate_from_raw(candidate.raw, {})
    assert again.policy == candidate.policy


@pytest.mark.parametrize(
    ("where", "text", "line", "field"),
    [
        ("deployment", "weight: 1.7976931348623157e308", 5, "models.m.deployments[0].weight"),
        ("deployment", "weight: 1000001", 5, "models.m.deployments[0].weight"),
        ("routing", "timeout_s: 1e20", 7, "routing.timeout_s"),
        ("routing", "attempt_timeout_s: 86401", 7, "routing.attempt_timeout_s"),
        ("routing", "cooldown_s: 1e300", 7, "routing.cooldown_s"),
        ("model", "routing: {timeout_s: 1e300}", 6, "models.m.routing.timeout_s"),
    ],
)
def test_a_weight_or_a_time_past_its_bound_is_refused_at_its_line(
    tmp_path: Path, where: str, text: str, line: int, field: str
) -> None:
    """Weights add up (two near 1.8e308 summed to infinity: every request went to the last
    deployment, probe p17); a deadline or cooldown past a day is a mistake."""
    found = problems(write(tmp_path, **{where: text}))
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path}/bundle.yaml:{line}: {field}: ")


def test_the_largest_weight_and_times_are_accepted(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        deployment="weight: 1000000",
        routing="{timeout_s: 86400, attempt_timeout_s: 86400, cooldown_s: 86400}"[1:-1],
    )
    candidate = candidate_from_folder(folder, {})
    assert candidate.policy.models["m"].routing.timeout_s == 86400
