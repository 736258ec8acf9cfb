"""Compiling a profile: a long keyword list compiles in about linear time, an input-only one
builds no stream hold-back, and what RE2 will not compile is a located policy error."""

import random
import string
import time
from pathlib import Path

import pytest

from gateway.guardrails.guards import ProfileRefused, compile_guards
from gateway.guardrails.patterns import MAX_KEYWORDS_CHARS
from gateway.guardrails.window import advance
from gateway.policy.errors import PolicyInvalid
from gateway.policy.schema import GuardrailProfile
from gateway.policy.store import load_policy_dir


def words(count: int, seed: int = 1) -> list[str]:
    """`count` random 30-letter keywords (no two share much of a prefix: a wide union)."""
    rng = random.Random(seed)
    return ["".join(rng.choices(string.ascii_lowercase, k=30)) for _ in range(count)]


def profile(side: str, *lists: list[str]) -> GuardrailProfile:
    rules = [
        {"name": f"words{i}", "action": "block", "keywords": listed}
        for i, listed in enumerate(lists)
    ]
    return GuardrailProfile.model_validate({side: rules})


def test_an_output_keyword_list_of_1500_compiles_in_seconds():
    """1,500 keywords of 30 letters held back on streams compile in well under 4 s (the
    prefix union took ~12 s: RE2's flattening was quadratic in its optional branches)."""
    listed = words(1500)
    began = time.perf_counter()
    guards = compile_guards([("big", profile("output", listed))], {})
    assert time.perf_counter() - began < 4
    step = advance(guards.output, "", "the answer is " + listed[7][:12], final=False)
    assert step.release == "the answer is " and step.keep == listed[7][:12]  # still held


def test_an_input_only_profile_builds_no_hold_back():
    """Input is scanned whole: its scanner builds no tail search (it would hold everything)."""
    listed = words(2000)
    guards = compile_guards([("big", profile("input", listed))], {})
    assert guards.output.is_empty
    assert guards.input.in_progress_from("clean prose ", 0) == 0  # no tail search: all held
    assert [f.rule.name for f in guards.input.find("say " + listed[3])] == ["words0"]


def test_rules_too_large_together_are_refused_at_the_largest():
    """Two keyword lists each under the bound but too large for one RE2 set: refused at the
    larger one's field, naming both rules, not a bare `failed to compile Set`."""
    small, large = words(1500, seed=2), words(2000, seed=3)
    with pytest.raises(ProfileRefused) as caught:
        compile_guards([("big", profile("input", small, large))], {})
    assert caught.value.path == ("guardrails", "big", "input", 1, "keywords")
    assert "words0, words1" in caught.value.why and "8 MiB" in caught.value.why


def test_a_rule_too_large_together_is_a_located_policy_error(tmp_path: Path):
    """`policy check` reports it as file:line: field: message."""
    lines = [
        "providers: {demo: {type: mock}}",
        "models: {m: {deployments: [{provider: demo, model: m}]}}",
        'teams: {t: {models: ["*"], guardrails: [p]}}',
        "guardrails:",
        "  p:",
        "    output:",
        "      - {detector: email, action: redact}",
        "    rules:",
    ]
    for i, listed in enumerate((words(1500, seed=2), words(2000, seed=3))):
        lines.append(f"      - {{name: w{i}, action: block, where: [input], keywords: [")
        lines += [f"          {word}," for word in listed]
        lines.append("        ]}")
    (tmp_path / "bundle.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(tmp_path, {})
    [issue] = caught.value.issues
    assert (
        issue.location == f"{tmp_path / 'bundle.yaml'}:1511"
    )  # its line: 8 above, then 1,502 of the first rule
    assert issue.field == "guardrails.p.rules[1].keywords"
    assert "compile to more than the 8 MiB RE2 allows" in issue.message


def test_keywords_past_the_bound_are_refused_before_compiling():
    """A rule's keywords may total MAX_KEYWORDS_CHARS characters, no more."""
    word = "k" * 200
    count, rest = divmod(MAX_KEYWORDS_CHARS, len(word))
    at_bound = [word] * count + (["k" * rest] if rest else [])
    compile_guards([("p", profile("output", at_bound))], {})
    with pytest.raises(ProfileRefused) as caught:
        compile_guards([("p", profile("output", [*at_bound, "x"]))], {})
    assert caught.value.path == ("guardrails", "p", "output", 0, "keywords")
    assert caught.value.why.startswith("keywords total 64,001 characters, more than the 64,000")
