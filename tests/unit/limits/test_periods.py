"""Budget periods: calendar boundaries in UTC and in a policy timezone, by the millisecond."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.limits.periods import period_bounds
from gateway.policy.compiled import BudgetPeriod


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (
            "day",
            "2025-03-31T23:59:59.999+00:00",
            "2025-03-31T00:00:00+00:00",
            "2025-04-01T00:00:00+00:00",
        ),
        (
            "day",
            "2025-04-01T00:00:00+00:00",
            "2025-04-01T00:00:00+00:00",
            "2025-04-02T00:00:00+00:00",
        ),
        (
            "month",
            "2025-01-31T23:59:59.999+00:00",
            "2025-01-01T00:00:00+00:00",
            "2025-02-01T00:00:00+00:00",
        ),
        (
            "month",
            "2025-02-01T00:00:00+00:00",
            "2025-02-01T00:00:00+00:00",
            "2025-03-01T00:00:00+00:00",
        ),
        (
            "month",
            "2024-12-15T12:00:00+00:00",
            "2024-12-01T00:00:00+00:00",
            "2025-01-01T00:00:00+00:00",
        ),
        (
            "month",
            "2024-02-29T10:00:00+00:00",
            "2024-02-01T00:00:00+00:00",
            "2024-03-01T00:00:00+00:00",
        ),
        (
            "week",
            "2025-01-05T23:59:59.999+00:00",
            "2024-12-30T00:00:00+00:00",
            "2025-01-06T00:00:00+00:00",
        ),
        (
            "week",
            "2025-01-06T00:00:00+00:00",
            "2025-01-06T00:00:00+00:00",
            "2025-01-13T00:00:00+00:00",
        ),
    ],
)
def test_utc_boundaries(period: str, now: str, start: str, end: str) -> None:
    """The last millisecond of a period belongs to it; the next one starts the next period."""
    assert period_bounds(BudgetPeriod(period), ms(now)) == (ms(start), ms(end))


def test_a_timezone_moves_the_day() -> None:
    """In Europe/Berlin the day begins at 23:00 UTC in winter."""
    start, end = period_bounds(BudgetPeriod.DAY, ms("2025-01-15T23:30:00+00:00"), "Europe/Berlin")
    assert (start, end) == (ms("2025-01-15T23:00:00+00:00"), ms("2025-01-16T23:00:00+00:00"))


def test_a_daylight_saving_day_is_23_hours_long() -> None:
    start, end = period_bounds(BudgetPeriod.DAY, ms("2025-03-30T12:00:00+00:00"), "Europe/Berlin")
    assert end - start == 23 * 3_600_000
    assert datetime.fromtimestamp(start / 1000, UTC).hour == 23
