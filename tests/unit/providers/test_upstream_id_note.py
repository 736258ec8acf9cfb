"""The upstream's request id kept for `x-upstream-request-id`: valid ones only, and only
for the provider whose response gave it."""

from __future__ import annotations

import contextvars

import pytest

from gateway.providers.base import note_upstream_request_id, upstream_request_id


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("req_abc123", b"req_abc123"),
        ("r" * 200, b"r" * 200),
        ("a b~", b"a b~"),
        ("r" * 201, None),
        ("req_é", None),
        ("req\tx", None),
        ("req\x7f", None),
        ("req\r\nx-evil: 1", None),
        ("", None),
        (None, None),
    ],
)
def test_only_printable_ascii_of_at_most_200_characters_is_kept(value, kept):
    def run() -> bytes | None:
        note_upstream_request_id("a", value)
        return upstream_request_id("a")

    assert contextvars.copy_context().run(run) == kept


def test_an_id_belongs_to_the_provider_that_gave_it_and_a_later_answer_replaces_it():
    def run() -> list[bytes | None]:
        note_upstream_request_id("a", "req_a")
        seen = [upstream_request_id("a"), upstream_request_id("b")]
        note_upstream_request_id("a", None)  # a's later answer gave none
        return [*seen, upstream_request_id("a")]

    assert contextvars.copy_context().run(run) == [b"req_a", None, None]
