"""Reading usage reports and generated text (gateway/usage/usage.py)."""

from __future__ import annotations

import pytest

from gateway.usage.usage import Usage, estimate_usage, output_text, usage_from_report


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}, Usage(5, 2)),
        (
            {
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 3},
            },
            Usage(5, 2, 3),
        ),
        (
            {"input_tokens": 4, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 2}},
            Usage(4, 1, 2),
        ),
        ({"prompt_tokens": 6}, Usage(6, 0)),  # embeddings report no completion
        ({"prompt_tokens": -1, "completion_tokens": "x"}, Usage(0, 0)),  # nonsense counts as 0
        ({"total_tokens": 7}, None),
        (None, None),
        ("usage", None),
    ],
)
def test_reports_in_every_shape(report: object, expected: Usage | None) -> None:
    assert usage_from_report(report) == expected


def test_generated_text_of_whole_answers_and_chunks() -> None:
    whole = {
        "choices": [
            {
                "message": {
                    "content": "Hi",
                    "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                }
            }
        ]
    }
    assert output_text("chat", whole) == "Hif{}"
    assert output_text("chat", {"choices": [{"delta": {"content": "x"}}]}) == "x"
    assert output_text("completions", {"choices": [{"text": "done"}]}) == "done"
    assert output_text("responses", {"type": "response.output_text.delta", "delta": "d"}) == "d"
    response = {"output": [{"content": [{"type": "output_text", "text": "t1"}, {"text": "t2"}]}]}
    assert output_text("responses", response) == "t1t2"
    assert output_text("chat", {"choices": "garbage"}) == ""


def test_an_estimate_is_marked_and_embeddings_generate_nothing() -> None:
    usage = estimate_usage(
        "embeddings", {"input": "Hello world"}, "text-embedding-3-small", "ignored"
    )
    assert usage == Usage(2, 0, 0, is_estimated=True)
    chat = estimate_usage(
        "chat", {"messages": [{"role": "user", "content": "Hi"}]}, "gpt-4o", "Hello"
    )
    assert chat.is_estimated and chat.output_tokens == 1
