"""What a usage report asks for: the month, the format, the group keys; parsed, no I/O.

The CLI and `GET /finance/reports/usage` parse with the same functions, so a bad
value is refused with the same `invalid_request_error` (400 on HTTP, exit 2 on the
CLI) naming the parameter. The clock is a parameter: "in the future" is decided
against `now_ms`, never read here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from gateway.errors import InvalidRequest, quoted

MS_PER_DAY = 86_400_000
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class ReportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    FOCUS = "focus"  # FinOps FOCUS 1.3 cost-and-usage CSV


class GroupKey(StrEnum):
    """A column a report can be grouped by; the value is the column's name in the report."""

    TEAM = "team"
    MODEL = "model"  # the alias the client asked for
    PROVIDER = "provider"
    SUBJECT = "subject"
    CLIENT = "client_id"  # the OAuth client (x_ClientId in FOCUS)
    DAY = "day"  # UTC calendar day, YYYY-MM-DD
    # The response cache's part: hit (tokens saved, cost 0), miss, bypass; empty for
    # requests under no cache policy. Splits hits' saved tokens from charged ones.
    CACHE = "cache"


DEFAULT_GROUP_BY = (GroupKey.TEAM, GroupKey.MODEL)
# What `--group-by` accepts: the column names, plus `client` as a short form of client_id.
_GROUP_NAMES = {key.value: key for key in GroupKey} | {"client": GroupKey.CLIENT}


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month in UTC: [start_ms, end_ms) in epoch milliseconds."""

    year: int
    month: int

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def next_first_day(self) -> date:
        if self.month == 12:
            return date(self.year + 1, 1, 1)
        return date(self.year, self.month + 1, 1)

    @property
    def start_ms(self) -> int:
        return _epoch_ms(self.first_day)

    @property
    def end_ms(self) -> int:
        return _epoch_ms(self.next_first_day)

    @property
    def days(self) -> int:
        return (self.next_first_day - self.first_day).days


@dataclass(frozen=True, slots=True)
class ReportRequest:
    month: Month
    format: ReportFormat
    group_by: tuple[GroupKey, ...]


def _epoch_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def parse_month(text: str | None, now_ms: int) -> Month:
    """`YYYY-MM`, from 1970-01 to the current UTC month (a month not begun has no usage)."""
    if text is None or not text:
        raise InvalidRequest(
            "Missing required parameter: 'month' (YYYY-MM, e.g. 2026-11).", param="month"
        )
    found = _MONTH.fullmatch(text)
    if found is None or not 1 <= int(found[2]) <= 12:
        raise InvalidRequest(
            f"Invalid 'month': {quoted(text)} is not a month written YYYY-MM (e.g. 2026-11).",
            param="month",
        )
    if int(found[1]) < 1970:  # written right; the ledger's clock starts at the epoch
        raise InvalidRequest(
            f"Invalid 'month': {quoted(text)} is before 1970-01, the first month a report covers.",
            param="month",
        )
    month = Month(int(found[1]), int(found[2]))
    if month.start_ms > now_ms:
        raise InvalidRequest(f"Invalid 'month': {month.label} has not begun yet.", param="month")
    return month


def parse_format(text: str | None) -> ReportFormat:
    if text is None or not text:
        return ReportFormat.CSV
    try:
        return ReportFormat(text)
    except ValueError:
        known = ", ".join(f.value for f in ReportFormat)
        raise InvalidRequest(
            f"Invalid 'format': {quoted(text)}; use one of {known}.", param="format"
        ) from None


def parse_group_by(text: str | None, param: str = "group_by") -> tuple[GroupKey, ...]:
    """Comma-separated keys in the order given; empty text (not absent) groups by nothing."""
    if text is None:
        return DEFAULT_GROUP_BY
    keys: list[GroupKey] = []
    for name in (part.strip() for part in text.split(",")):
        if not name and "," not in text:
            continue  # "" alone: one row for the whole month
        key = _GROUP_NAMES.get(name)
        if key is None:
            known = ", ".join(key.value for key in GroupKey)
            raise InvalidRequest(
                f"Invalid '{param}': unknown key {quoted(name)}; use any of {known}.",
                param=param,
            )
        if key in keys:
            raise InvalidRequest(f"Invalid '{param}': {quoted(name)} is named twice.", param=param)
        keys.append(key)
    return tuple(keys)


def joined_group_by(values: Sequence[str]) -> str | None:
    """A repeated group-by (`?group_by=team&group_by=model`, `--group-by team --group-by
    model`) means all of them, in order, as if comma-separated; none given: None."""
    return ",".join(values) if values else None


def parse_report_request(
    month: str | None, format: str | None, group_by: str | None, now_ms: int
) -> ReportRequest:
    """Everything a report needs, checked: format, then month, then group keys."""
    return ReportRequest(
        month=parse_month(month, now_ms),
        format=parse_format(format),
        group_by=parse_group_by(group_by),
    )


def day_label(day_index: int) -> str:
    """Days since the epoch (at_ms // MS_PER_DAY) → `YYYY-MM-DD`."""
    return datetime.fromtimestamp(day_index * 86_400, UTC).date().isoformat()
