"""The usage report as CSV or JSON bytes (SPEC §6); pure, deterministic.

Same sums in → byte-identical file out: rows are sorted by their group keys in
code-point order (None, a key the ledger left empty, first), JSON keys keep one
fixed order, CSV ends lines with CRLF (RFC 4180) and defuses text cells a spreadsheet
would run as formulas or a terminal as control sequences (csv_cells.py). Money is
converted from integer nano-USD to text once per figure, by `usd_text` (exact, nine
decimals); the totals are the integer sum of the rows' integers, so they equal the
ledger's SUM exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.usage.csv_cells import csv_bytes
from gateway.usage.pricing import usd_text
from gateway.usage.report_query import Key, Sums, UnknownPrice
from gateway.usage.report_request import GroupKey, Month, day_label

METRIC_COLUMNS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
)


@dataclass(frozen=True, slots=True)
class ReportWarning:
    """Something finance must know about the month's figures (today: unpriced rows)."""

    code: str
    message: str
    model: str | None
    deployment: str | None
    rows: int
    input_tokens: int
    output_tokens: int

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "model": self.model,
            "deployment": self.deployment,
            "rows": self.rows,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


def unknown_price_warnings(found: Sequence[UnknownPrice]) -> list[ReportWarning]:
    """One warning per model and deployment whose rows were charged zero for want of a price."""
    ordered = sorted(found, key=lambda u: (_sort_text(u.model), _sort_text(u.deployment)))
    return [
        ReportWarning(
            code="unknown_price",
            message=(
                f"{u.rows} request(s) of model {_named(u.model)} on deployment "
                f"{_named(u.deployment)} used tokens but no price is known: charged 0 USD. "
                "Set a `price` for it in the policy; past rows keep the price they had."
            ),
            model=u.model,
            deployment=u.deployment,
            rows=u.rows,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
        )
        for u in ordered
    ]


def _named(value: str | None) -> str:
    return "(none)" if value is None else repr(value)


def _sort_text(value: str | None) -> tuple[int, str]:
    return (0, "") if value is None else (1, value)


def _sort_value(value: str | int | None) -> tuple[int, str | int]:
    return (0, "") if value is None else (1, value)


def _key_values(key: Key, keys: Sequence[GroupKey]) -> list[str | None]:
    """The group's values as the report shows them: a day index becomes YYYY-MM-DD."""
    shown: list[str | None] = []
    for name, value in zip(keys, key, strict=True):
        if value is None:
            shown.append(None)
        elif name is GroupKey.DAY:
            shown.append(day_label(int(value)))
        else:
            shown.append(str(value))
    return shown


def _metrics(sums: Sums) -> list[int | str]:
    return [
        sums.requests,
        sums.errors,
        sums.input_tokens,
        sums.output_tokens,
        sums.cached_tokens,
        usd_text(sums.cost_nanousd),
    ]


@dataclass(frozen=True, slots=True)
class Summary:
    """A month's sums per group, ready to render."""

    month: Month
    keys: tuple[GroupKey, ...]
    groups: Mapping[Key, Sums]
    warnings: Sequence[ReportWarning]

    def ordered(self) -> list[tuple[Key, Sums]]:
        return sorted(self.groups.items(), key=lambda item: tuple(map(_sort_value, item[0])))

    def totals(self) -> Sums:
        total = Sums()
        for sums in self.groups.values():
            total.add(sums)
        return total

    @property
    def header(self) -> list[str]:
        return ["month", *(key.value for key in self.keys), *METRIC_COLUMNS]


def summary_csv(summary: Summary) -> bytes:
    rows = (
        [
            summary.month.label,
            *("" if v is None else v for v in _key_values(key, summary.keys)),
            *_metrics(sums),
        ]
        for key, sums in summary.ordered()
    )
    return csv_bytes(summary.header, rows, METRIC_COLUMNS)


def summary_json(summary: Summary) -> bytes:
    rows = []
    for key, sums in summary.ordered():
        values = [summary.month.label, *_key_values(key, summary.keys), *_metrics(sums)]
        rows.append(dict(zip(summary.header, values, strict=True)))
    totals = summary.totals()
    document = {
        "month": summary.month.label,
        "rows": rows,
        "totals": dict(zip(METRIC_COLUMNS, _metrics(totals), strict=True)),
        "warnings": [warning.as_json() for warning in summary.warnings],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
