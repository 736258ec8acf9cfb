"""How long an upstream asks to be left alone (gateway/providers/base.py)."""

from email.utils import formatdate

import pytest

from gateway.providers.base import retry_after_seconds

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms first, as openai-python
        ({"Retry-After": formatdate(NOW + 30, usegmt=True)}, 30.0),  # an HTTP-date
        ({"Retry-After": formatdate(NOW - 30, usegmt=True)}, 0.0),  # already past
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "x", "retry-after": "2"}, 2.0),
        ({}, None),
    ],
)
def test_retry_after_in_every_form_rfc_9110_allows(headers: dict[str, str], expected) -> None:
    assert retry_after_seconds(headers, now=NOW) == expected


def test_no_headers_object_means_no_hint() -> None:
    assert retry_after_seconds(None) is None
