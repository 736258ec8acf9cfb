"""A `${` that is no valid reference (a shell form, unclosed, empty) is an error in a provider's
field, never text sent as written; beyond the providers, one that starts like a reference is
an error too, while `${` before anything else stays plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.secrets import ReferenceRules, references_beyond_providers, resolve_references
from gateway.policy.store import load_policy_dir

ENV = {"FAKE_API_KEY": "sk-fake-0123456789"}
STRAY = [
    "http://127.0.0.1:18144/${FAKE_API_KEY:-x}/v1",
    "http://127.0.0.1:18144/${FAKE_API_KEY:?unset}/v1",
    "http://127.0.0.1:18144/${FAKE_API_KEY/v1",
    "http://127.0.0.1:18144/${}/v1",
    "http://127.0.0.1:18144/${1}/v1",
    "http://127.0.0.1:18144/${file:/run/secrets/k/v1",
    "http://127.0.0.1:18144/v1/$${FAKE_API_KEY}/${FAKE_API_KEY:-x}",
]


@pytest.mark.parametrize("value", STRAY)
@pytest.mark.parametrize("field", ["api_base", "api_key", "api_version", "region"])
def test_a_stray_reference_in_a_provider_field_is_refused(field: str, value: str) -> None:
    _, problems = resolve_references(value, field, ENV, ReferenceRules())
    assert any("starts no valid reference" in p for p in problems), problems
    assert not any("FAKE_API_KEY:" in p or "unset" in p for p in problems)  # not echoed


@pytest.mark.parametrize(
    ("written", "resolved"),
    [
        ("http://h/v1/${FAKE_API_KEY}", "http://h/v1/sk-fake-0123456789"),
        ("http://h/v1/$${FAKE_API_KEY:-x}", "http://h/v1/${FAKE_API_KEY:-x}"),  # the escape
        ("http://h/v1/$x{y}", "http://h/v1/$x{y}"),
    ],
)
def test_valid_references_and_escapes_in_api_base_are_no_error(written: str, resolved: str) -> None:
    assert resolve_references(written, "api_base", ENV, ReferenceRules()) == (resolved, [])


def test_beyond_the_providers_a_stray_reference_like_one_is_an_error() -> None:
    """`${NAME:-x}` in a team's clients would be the literal text; `${ notes}` is plain text."""
    raw = {
        "teams": {"t": {"clients": ["${FAKE_API_KEY:-x}", "$${FAKE_API_KEY:-x}", "${file:/a"]}},
        "guardrails": {"g": {"input": [{"pattern": "costs or ${ notes} or ${2}"}]}},
    }
    found = dict(references_beyond_providers(raw))
    assert set(found) == {("teams", "t", "clients", 0), ("teams", "t", "clients", 2)}
    assert all("starts no valid reference" in problem for problem in found.values())


def test_policy_check_names_file_line_and_field(tmp_path: Path) -> None:
    """The probe's api_base is refused at its line; before, it was sent as `/$%7B...%7D/v1`."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(
        "providers:\n"
        "  local:\n"
        "    type: openai-compatible\n"
        '    api_base: "http://127.0.0.1:18144/${FAKE_API_KEY:-x}/v1"\n'
        "models:\n"
        "  m: {deployments: [{provider: local, model: x}]}\n"
    )
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(folder, ENV)
    (issue,) = caught.value.issues
    assert str(issue).startswith(f"{folder}/bundle.yaml:4: providers.local.api_base: a ${{ here")
