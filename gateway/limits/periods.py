"""Calendar periods a budget counts over: where the current one began and when it ends.

Pure: the instant comes in as epoch milliseconds. Days begin at local midnight in
the policy's timezone (UTC by default), weeks on Monday, months on the 1st. A
counter is keyed by its period's start, so a new period simply has no spend yet:
nothing is ever reset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from gateway.policy.compiled import BudgetPeriod


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def period_bounds(period: BudgetPeriod, now_ms: int, timezone: str = "UTC") -> tuple[int, int]:
    """[start, end) of the period holding `now_ms`, as epoch ms (end = the next start)."""
    # Every zone's period boundaries fall on whole minutes: one computation per minute.
    return _bounds_of_minute(period, now_ms // 60_000, timezone)


@lru_cache(maxsize=256)
def _bounds_of_minute(period: BudgetPeriod, minute: int, timezone: str) -> tuple[int, int]:
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(minute * 60, UTC).astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if period is BudgetPeriod.DAY:
        start, end = midnight, midnight + timedelta(days=1)
    elif period is BudgetPeriod.WEEK:
        start = midnight - timedelta(days=midnight.weekday())
        end = start + timedelta(days=7)
    else:
        start = midnight.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    # Wall-clock dates → instants in the zone (a DST day is 23 or 25 hours long).
    return _ms(start.replace(tzinfo=zone)), _ms(end.replace(tzinfo=zone))
