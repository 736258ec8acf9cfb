"""Parsing what a usage report asks for: month, format, group keys."""

import pytest

from gateway.errors import InvalidRequest
from gateway.usage.report_request import (
    DEFAULT_GROUP_BY,
    GroupKey,
    Month,
    ReportFormat,
    day_label,
    joined_group_by,
    parse_format,
    parse_group_by,
    parse_month,
    parse_report_request,
)
from tests.support.ledger_rows import at_ms

NOW = at_ms(2026, 3, 10)


@pytest.mark.parametrize(
    "text",
    [
        "2026-1",
        "2026-13",
        "2026-00",
        "26-01",
        "2026-01-01",
        " 2026-01",
        "2026/01",
        "\uff12\uff10\uff12\uff16-01",
        "abcd-ef",
        "2026-01\n",
    ],
)
def test_a_month_not_written_yyyy_mm_is_refused_naming_month(text):
    """A month that is not YYYY-MM is a 400 naming `month`."""
    with pytest.raises(InvalidRequest) as refused:
        parse_month(text, NOW)
    assert refused.value.param == "month"
    assert "YYYY-MM" in refused.value.message


@pytest.mark.parametrize("text", ["1969-12", "0001-01", "0000-01"])
def test_a_month_before_1970_is_refused_for_its_year_not_its_form(text):
    """A month written right but before the epoch says so, not that it is malformed."""
    with pytest.raises(InvalidRequest) as refused:
        parse_month(text, NOW)
    assert refused.value.param == "month"
    assert "before 1970-01" in refused.value.message
    assert "YYYY-MM" not in refused.value.message


@pytest.mark.parametrize("text", [None, ""])
def test_a_missing_month_is_refused(text):
    with pytest.raises(InvalidRequest) as refused:
        parse_month(text, NOW)
    assert refused.value.param == "month"
    assert "Missing" in refused.value.message


def test_a_future_month_is_refused_the_current_month_is_not():
    """The month now running reports what the ledger has so far; next month is refused."""
    assert parse_month("2026-03", NOW) == Month(2026, 3)
    assert parse_month("1970-01", NOW) == Month(1970, 1)
    with pytest.raises(InvalidRequest) as refused:
        parse_month("2026-04", NOW)
    assert refused.value.param == "month"
    assert "not begun" in refused.value.message


def test_a_month_begins_at_its_first_millisecond():
    """A month starting exactly now is not in the future."""
    assert parse_month("2026-04", at_ms(2026, 4, 1, 0)) == Month(2026, 4)
    with pytest.raises(InvalidRequest):
        parse_month("2026-04", at_ms(2026, 4, 1, 0) - 1)


@pytest.mark.parametrize(
    ("month", "days", "end"),
    [
        (Month(2026, 2), 28, "2026-03-01"),
        (Month(2024, 2), 29, "2024-03-01"),
        (Month(2025, 12), 31, "2026-01-01"),
    ],
)
def test_month_ranges_are_utc_calendar_months(month, days, end):
    assert month.days == days
    assert month.next_first_day.isoformat() == end
    assert month.end_ms - month.start_ms == days * 86_400_000
    assert day_label(month.start_ms // 86_400_000) == month.first_day.isoformat()


def test_formats():
    assert parse_format(None) is ReportFormat.CSV
    assert parse_format("json") is ReportFormat.JSON
    assert parse_format("focus") is ReportFormat.FOCUS
    for bad in ("CSV", "xml", "focus "):
        with pytest.raises(InvalidRequest) as refused:
            parse_format(bad)
        assert refused.value.param == "format"


def test_group_keys_keep_their_order_and_client_is_client_id():
    assert parse_group_by(None) == DEFAULT_GROUP_BY == (GroupKey.TEAM, GroupKey.MODEL)
    assert parse_group_by("day,provider") == (GroupKey.DAY, GroupKey.PROVIDER)
    assert parse_group_by(" team , subject ") == (GroupKey.TEAM, GroupKey.SUBJECT)
    assert parse_group_by("client") == parse_group_by("client_id") == (GroupKey.CLIENT,)
    assert parse_group_by("") == ()
    assert parse_group_by("team,model,cache") == (GroupKey.TEAM, GroupKey.MODEL, GroupKey.CACHE)


@pytest.mark.parametrize(
    "text", ["team,colour", "Team", "team,,model", "team,team", "model,", "deployment"]
)
def test_an_unknown_or_repeated_group_key_is_refused_naming_group_by(text):
    with pytest.raises(InvalidRequest) as refused:
        parse_group_by(text)
    assert refused.value.param == "group_by"


def test_repeated_group_by_values_are_all_their_keys_in_order():
    assert joined_group_by([]) is None  # none given: the default grouping
    assert parse_group_by(joined_group_by([])) == DEFAULT_GROUP_BY
    assert parse_group_by(joined_group_by(["team", "model"])) == (GroupKey.TEAM, GroupKey.MODEL)
    assert parse_group_by(joined_group_by(["day", "team,model"])) == (
        GroupKey.DAY,
        GroupKey.TEAM,
        GroupKey.MODEL,
    )
    assert parse_group_by(joined_group_by([""])) == ()  # one empty value: the whole month
    with pytest.raises(InvalidRequest, match="named twice"):
        parse_group_by(joined_group_by(["team", "team"]))


def test_a_whole_request_checks_every_part():
    request = parse_report_request("2026-02", "json", "team", NOW)
    assert (request.month, request.format, request.group_by) == (
        Month(2026, 2),
        ReportFormat.JSON,
        (GroupKey.TEAM,),
    )
    with pytest.raises(InvalidRequest) as refused:
        parse_report_request("2026-02", "json", "nope", NOW)
    assert refused.value.param == "group_by"
