"""What a policy issue echoes of a bundle: control characters escaped, quoted values cut."""

from __future__ import annotations

from gateway.errors import escaped
from gateway.policy.errors import MAX_ISSUE_CHARS, PolicyIssue, format_path, shown_message


def test_control_characters_are_escaped_and_printable_text_kept() -> None:
    assert escaped("t\n2\r\x1b[31m\u2028é") == "t\\n2\\r\\x1b[31m\\u2028é"
    assert escaped("plain é ü 日本") == "plain é ü 日本"


def test_an_issue_escapes_its_location_field_and_message() -> None:
    issue = PolicyIssue("p/a\nb.yaml:3", format_path(("teams", "t\n2", "[key]")), "bad\nvalue")
    assert str(issue) == "p/a\\nb.yaml:3: teams.t\\n2.[key]: bad\\nvalue"


def test_a_long_quoted_value_is_cut_with_its_length() -> None:
    message = f"unknown model {'x' * 5000!r}"
    assert shown_message(message) == f"unknown model '{'x' * 100}…' (5000 characters)"


def test_a_double_quoted_value_is_cut_too() -> None:
    value = "it's" * 100  # repr quotes it with "
    assert shown_message(f"client {value!r}") == f'client "{value[:100]}…" (400 characters)'


def test_short_values_and_prose_apostrophes_are_left_as_written() -> None:
    prose = (
        "a team name may not contain '/': it is one segment of /admin/teams/{team}; a team's "
        "name, like a profile's, is one URL path segment and cannot hold any of the "
        "characters that would end it early, such as / ? or #"
    )
    assert shown_message(prose) == prose
    assert shown_message(f"unknown model {'x' * 100!r}") == f"unknown model '{'x' * 100}'"


def test_a_value_echoed_without_quotes_is_bounded_as_a_whole() -> None:
    shown = shown_message("cannot read " + "y" * 100_000)
    assert len(shown) < MAX_ISSUE_CHARS + 50
    assert shown.endswith("(cut, 100012 characters)")


def test_many_stray_quotes_take_linear_time() -> None:
    # A scan that backtracked from each quote to the end would take minutes here.
    shown_message("' " * 200_000)
