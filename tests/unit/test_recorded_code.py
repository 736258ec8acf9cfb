"""What the records keep of an error code: an identifier as it is, anything else as
the one word that says it was not one."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import UNRECORDED_CODE, recorded_code

IDENTIFIER_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
IDENTIFIER = st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z")


@given(IDENTIFIER)
def test_an_identifier_is_kept_as_it_is(code: str) -> None:
    assert recorded_code(code) == code


@given(st.text().filter(lambda text: not IDENTIFIER_RE.fullmatch(text)))
def test_anything_else_is_not_kept(text: str) -> None:
    assert recorded_code(text) == UNRECORDED_CODE


def test_the_codes_that_matter_are_kept() -> None:
    for code in ("context_length_exceeded", "rate_limit_exceeded", "invalid_api_key", "400"):
        assert recorded_code(code) == code
    assert recorded_code(None) is None
    assert recorded_code("") == UNRECORDED_CODE
    assert recorded_code("x" * 65) == UNRECORDED_CODE
    assert recorded_code("a prompt quoted back") == UNRECORDED_CODE
    assert recorded_code("code\n") == UNRECORDED_CODE
