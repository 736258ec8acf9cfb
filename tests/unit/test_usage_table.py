"""`gateway usage`'s table: a team with per-user rules only says what each user may
spend, not "no budgets or limits"."""

from __future__ import annotations

from gateway.commands.usage import _table

VIEW = {"team": "pu", "user": None, "at": "2026-12-04T00:00:00.00Z", "timezone": "UTC"}


def test_a_team_with_per_user_rules_only_lists_them_and_points_to_user() -> None:
    shown = _table(
        {
            **VIEW,
            "budgets": [],
            "limits": [],
            "per_user": [
                {"kind": "budget", "period": "day", "unit": "tokens", "limit": 500,
                 "resets_at": "2026-12-05T00:00:00.00Z"},
                {"kind": "rpm", "limit": 60},
            ],
        }
    )  # fmt: skip
    assert "no budgets or limits" not in shown
    assert "per user, each: budget      day   tokens limit 500" in shown
    assert "per user, each: rpm" in shown and "limit 60" in shown and "--user SUBJECT" in shown


def test_a_team_with_nothing_says_so() -> None:
    assert "no budgets or limits" in _table({**VIEW, "budgets": [], "limits": [], "per_user": []})
    assert "no budgets or limits" in _table({**VIEW, "budgets": [], "limits": []})  # an old server


def test_a_rate_limit_says_when_it_resets_as_the_headers_do() -> None:
    """The text said used and remaining of rpm/tpm but not when they free (a probe);
    --json had it. A concurrency slot frees when a request ends: no clock."""
    limits = [
        {"scope": "user", "kind": "rpm", "limit": 2, "used": 1, "remaining": 1,
         "resets_in_ms": 26185},
        {"scope": "team", "kind": "tpm", "limit": 900, "used": None, "remaining": None,
         "resets_in_ms": None},
        {"scope": "team", "kind": "concurrency", "limit": 3, "used": 0, "remaining": 3,
         "resets_in_ms": None},
    ]  # fmt: skip
    rpm, tpm, concurrency = _table({**VIEW, "budgets": [], "limits": limits}).splitlines()[1:]
    assert rpm.endswith("used 1  remaining 1  resets in 26.185s")
    assert tpm.endswith("remaining ?  resets in ?")
    assert "resets" not in concurrency
