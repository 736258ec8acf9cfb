"""Whether a stream the upstream closed without `[DONE]` had ended (stream_end.py)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.providers.stream_end import expected_choices, finished_choices, responses_ended


def _event(payload: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def _choice_chunk(index: int, finish: str | None) -> bytes:
    return _event({"choices": [{"index": index, "delta": {}, "finish_reason": finish}]})


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        ("chat", {}, 1),
        ("chat", {"n": 3}, 3),
        ("chat", {"n": True}, 1),
        ("chat", {"n": 0}, 1),
        ("chat", {"n": "2"}, 1),
        ("completions", {"prompt": "x", "n": 2}, 2),
        ("completions", {"prompt": ["a", "b"]}, 2),
        ("completions", {"prompt": ["a", "b", "c"], "n": 2}, 6),
        ("completions", {"prompt": [[1, 2], [3]]}, 2),
        ("completions", {"prompt": [1, 2, 3]}, 1),  # one prompt of token ids
    ],
)
def test_expected_choices(endpoint: str, body: dict[str, object], expected: int) -> None:
    assert expected_choices(endpoint, body) == expected  # type: ignore[arg-type]


def test_finished_choices_reads_each_event() -> None:
    chunk = _choice_chunk(0, "stop") + _choice_chunk(1, None) + _choice_chunk(2, "length")
    assert finished_choices(chunk) == {0, 2}
    assert finished_choices(b"data: [DONE]\n\n: comment\n\n") == set()
    # a choice without an index is choice 0, as OpenAI's single-choice servers send it
    assert finished_choices(_event({"choices": [{"finish_reason": "stop"}]})) == {0}


def test_text_that_looks_like_a_finish_is_no_finish() -> None:
    content = {"choices": [{"index": 1, "delta": {"content": '"finish_reason": "stop"'}}]}
    assert finished_choices(_event(content)) == set()


def test_a_responses_stream_ends_on_an_events_own_type_only() -> None:
    """Probe p11: `response.created` echoes the caller's tool schema as JSON, which may
    hold `{"type": "response.completed"}`; that is no end."""
    created = {
        "type": "response.created",
        "response": {"tools": [{"parameters": {"default": {"type": "response.completed"}}}]},
    }
    delta = {"type": "response.output_text.delta", "delta": "hi"}
    assert not responses_ended([_event(created), _event(delta)])
    assert responses_ended([_event(created), _event({"type": "response.completed"})])
    assert responses_ended([_event({"type": "response.incomplete"})])
    assert responses_ended([_event({"response": {}}, event="response.failed")])
    assert not responses_ended([_event({"type": "response.in_progress"}, "response.completed")])


@given(n=st.integers(2, 6), finished=st.sets(st.integers(0, 7)))
def test_every_choice_must_finish(n: int, finished: set[int]) -> None:
    chunk = b"".join(_choice_chunk(i, "stop" if i in finished else None) for i in range(8))
    assert finished_choices(chunk) == finished
    assert (finished_choices(chunk) >= set(range(n))) == all(i in finished for i in range(n))
