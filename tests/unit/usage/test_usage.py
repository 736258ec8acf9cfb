"""Reading usage reports and generated text (gateway/usage/usage.py)."""

from __future__ import annotations

import pytest

from gateway.usage.usage import (
    Usage,
    estimate_usage,
    output_text,
    usage_from_report,
    wire_usage,
)


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
        # embeddings report no completion, and a total equal to the prompt
        ({"prompt_tokens": 6, "total_tokens": 6}, Usage(6, 0)),
        ({"prompt_tokens": 6, "completion_tokens": None, "total_tokens": 6}, Usage(6, 0)),
        ({"total_tokens": 7}, None),
        (None, None),
        ("usage", None),
    ],
)
def test_reports_in_every_shape(report: object, expected: Usage | None) -> None:
    assert usage_from_report(report) == expected


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"prompt_tokens": 10.0, "completion_tokens": 5000.0, "total_tokens": 5010.0}, (10, 5000)),
        ({"prompt_tokens": "10", "completion_tokens": "5000", "total_tokens": "5010"}, (10, 5000)),
        ({"input_tokens": 7.0, "output_tokens": "3"}, (7, 3)),
        ({"prompt_tokens": 0.0, "completion_tokens": -0.0}, (0, 0)),
        # The largest count is read, and charged as the most a ledger row holds.
        ({"prompt_tokens": 2**63 - 1, "completion_tokens": "0"}, (2**31 - 1, 0)),
    ],
)
def test_counts_sent_as_integral_floats_or_digit_strings_are_taken_at_their_value(
    report: object, expected: tuple[int, int]
) -> None:
    usage = usage_from_report(report)
    assert usage is not None and not usage.is_estimated
    assert (usage.input_tokens, usage.output_tokens) == expected


@pytest.mark.parametrize(
    "report",
    [
        {"prompt_tokens": -1, "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": -5},
        {"prompt_tokens": 10.5, "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": 5.25},
        {"prompt_tokens": "x", "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": "5.0"},
        {"prompt_tokens": 10, "completion_tokens": " 5"},
        {"prompt_tokens": 10, "completion_tokens": "-5"},
        {"prompt_tokens": 10, "completion_tokens": "\u0665"},  # an Arabic-Indic 5
        {"prompt_tokens": 10, "completion_tokens": "9" * 5000},
        {"prompt_tokens": 10, "completion_tokens": 2**63},
        {"prompt_tokens": 10, "completion_tokens": 1e300},
        {"prompt_tokens": 10, "completion_tokens": float("inf")},
        {"prompt_tokens": 10, "completion_tokens": float("nan")},
        {"prompt_tokens": True, "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": False},
        {"prompt_tokens": 10, "completion_tokens": [5]},
        {"prompt_tokens": 10, "completion_tokens": {"n": 5}},
        {"prompt_tokens": None, "completion_tokens": 5},
        {"prompt_tokens": 10},  # no output count, and no total saying there was none
        {"prompt_tokens": 10, "total_tokens": 5010},
        {"prompt_tokens": 10, "total_tokens": "x"},
        {"completion_tokens": 5, "input_tokens": None},
        {"input_tokens": 7},
        {"input_tokens": 7, "output_tokens": "three"},
    ],
)
def test_a_report_with_unusable_counts_is_no_report(report: object) -> None:
    """The caller then counts the tokens itself and marks them estimated."""
    assert usage_from_report(report) is None


def test_unreadable_details_count_zero_and_readable_ones_are_taken_at_their_value() -> None:
    report = {
        "prompt_tokens": 10,
        "completion_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": "4"},
        "completion_tokens_details": {"reasoning_tokens": 6.0},
        "cache_creation_input_tokens": 2.0,
    }
    assert usage_from_report(report) == Usage(10, 8, 4, cache_write_tokens=2, reasoning_tokens=6)
    odd = {
        "prompt_tokens": 10,
        "completion_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 1.5},
        "completion_tokens_details": {"reasoning_tokens": True},
        "cache_creation_input_tokens": "lots",
    }
    assert usage_from_report(odd) == Usage(10, 8)


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


def delta_chunk(delta: dict[str, object]) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": delta}]}


def answer(message: dict[str, object]) -> dict[str, object]:
    return {"choices": [{"index": 0, "message": message}]}


@pytest.mark.parametrize("wrap", [delta_chunk, answer], ids=["delta", "message"])
@pytest.mark.parametrize(
    ("message", "generated"),
    [
        ({"content": None, "reasoning_content": "think"}, "think"),
        ({"content": "", "reasoning": "think"}, "think"),
        ({"reasoning_content": "think", "reasoning": "think"}, "think"),  # vLLM's both: once
        ({"reasoning_content": "a", "reasoning": "b"}, "ab"),
        ({"content": None, "refusal": "I can't help with that."}, "I can't help with that."),
        ({"function_call": {"name": "get_weather"}}, "get_weather"),
        ({"function_call": {"arguments": '{"city": "Paris"}'}}, '{"city": "Paris"}'),
        ({"content": "ok", "function_call": {"name": "f", "arguments": "{}"}}, "okf{}"),
        ({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, "{}"),
        ({"content": None, "function_call": None, "tool_calls": None, "refusal": None}, ""),
        ({"tool_calls": "garbage", "function_call": ["x"], "reasoning": 5}, ""),
    ],
)
def test_every_text_a_chat_model_generated_is_counted(
    wrap: object, message: dict[str, object], generated: str
) -> None:
    assert output_text("chat", wrap(message)) == generated  # type: ignore[operator]


def test_every_text_of_a_whole_responses_answer_is_counted() -> None:
    response = {
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan;"}]},
            {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "why;"}]},
            {"type": "message", "content": [{"type": "refusal", "refusal": "no;"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{};"},
            {"type": "custom_tool_call", "call_id": "d", "name": "g", "input": "x;"},
            {"type": "message", "content": [{"type": "output_text", "text": "done"}]},
        ]
    }
    assert output_text("responses", response) == "plan;why;no;f{};gx;done"
    refusal_delta = {"type": "response.refusal.delta", "delta": "no"}
    assert output_text("responses", refusal_delta) == "no"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("chat/completions", {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}),
        ("completions", {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}),
        ("embeddings", {"prompt_tokens": 7, "total_tokens": 7}),
        (
            "responses",
            {
                "input_tokens": 7,
                "input_tokens_details": {"cached_tokens": 2},
                "output_tokens": 3,
                "output_tokens_details": {"reasoning_tokens": 1},
                "total_tokens": 10,
            },
        ),
    ],
)
def test_wire_usage_spells_each_endpoints_usage_as_openai_does(endpoint, expected):
    usage = Usage(7, 3, cached_tokens=2, reasoning_tokens=1, is_estimated=True)
    assert wire_usage(endpoint, usage) == expected
    assert usage_from_report(wire_usage(endpoint, usage)) is not None  # reads back


def test_cached_tokens_are_at_most_the_input_they_are_part_of() -> None:
    """An upstream reporting more cached tokens than prompt tokens: the ledger keeps the
    input's count (the price was already computed on it), so reports and FOCUS agree."""
    usage = usage_from_report(
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 500},
        }
    )
    assert usage is not None and (usage.input_tokens, usage.cached_tokens) == (100, 100)
    fine = usage_from_report(
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 40},
        }
    )
    assert fine is not None and fine.cached_tokens == 40


def test_reasoning_and_audio_counts_past_their_totals_are_capped_at_them():
    """Probe p14: a row held 500 reasoning tokens of 5 output. They are part of the output
    (audio input of the input), so a report of more is capped at it."""
    from gateway.usage.usage import usage_from_report

    usage = usage_from_report(
        {
            "prompt_tokens": 5,
            "completion_tokens": 5,
            "completion_tokens_details": {"reasoning_tokens": 500, "audio_tokens": 9},
            "prompt_tokens_details": {"audio_tokens": 50},
        }
    )
    assert usage is not None
    assert (usage.reasoning_tokens, usage.output_audio_tokens, usage.input_audio_tokens) == (
        5,
        5,
        5,
    )


def test_output_past_the_bound_is_the_bound_estimated():
    from gateway.usage.usage import capped_usage, within_output_cap

    reported = capped_usage(10, 2**40, reasoning_tokens=2**35)
    assert within_output_cap(reported, None) == reported
    bounded = within_output_cap(reported, 200)
    assert (bounded.output_tokens, bounded.reasoning_tokens, bounded.is_estimated) == (
        200,
        200,
        True,
    )
    exact = capped_usage(10, 150)
    assert within_output_cap(exact, 200) is exact
