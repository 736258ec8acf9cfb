"""Where the texts are: each request and answer field that carries text is scanned, a
rewritten choice loses its logprobs, and arguments are scanned with escapes decoded."""

import json
import re
from typing import Any

import pytest

from gateway.guardrails.check import check_answer, check_request
from gateway.guardrails.decision import Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.texts import rewrite_answer, rewrite_request, rewrite_response_event

EMAIL = "bob@example.com"
REDACT_EMAIL = Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))])


def replacing(word: str):
    """A text function that redacts each `word` as `[R]`."""
    return lambda text: [(m.start(), m.end(), "[R]") for m in re.finditer(re.escape(word), text)]


mark = replacing("X")


def redacted_paths(value: Any, path: str = "") -> list[str]:
    """Where `[R]` occurs in a JSON value."""
    if isinstance(value, str):
        return [path] if "[R]" in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in redacted_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in redacted_paths(v, f"{path}[{i}]")]
    return []


SCHEMA = {
    "type": "object",
    "title": "X",
    "properties": {
        "kind": {"type": "string", "enum": ["a", "X"], "default": "X", "examples": ["X"]},
        "fixed": {"const": "X"},
        "description": {"type": "string", "description": "X"},
    },
}

REQUESTS = [
    ("chat", {"messages": [{"role": "user", "name": "X", "content": "hi"}]}, 1),
    ("chat", {"messages": [], "prediction": {"type": "content", "content": "X"}}, 1),
    (
        "chat",
        {"messages": [], "prediction": {"content": [{"type": "text", "text": "X"}]}},
        1,
    ),
    (
        "chat",
        {
            "messages": [],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "n", "description": "X", "schema": SCHEMA},
            },
        },
        7,
    ),
    (
        "chat",
        {
            "messages": [],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}],
        },
        6,
    ),
    (
        "chat",
        {
            "messages": [],
            "tools": [{"type": "custom", "custom": {"name": "f", "description": "X"}}],
        },
        1,
    ),
    (
        "chat",
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "custom", "custom": {"name": "g", "input": "X"}}
                    ],
                }
            ]
        },
        1,
    ),
    ("chat", {"messages": [], "stop": "X"}, 1),
    ("chat", {"messages": [], "stop": ["a", "X"]}, 1),
    ("completions", {"prompt": "hi", "stop": ["X"]}, 1),
    (
        "responses",
        {
            "input": "hi",
            "text": {"format": {"type": "json_schema", "description": "X", "schema": SCHEMA}},
        },
        7,
    ),
    (
        "responses",
        {
            "input": [
                {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": "X"}]}
            ]
        },
        1,
    ),
    ("responses", {"input": [{"type": "custom_tool_call", "call_id": "c", "input": "X"}]}, 1),
    (
        "responses",
        {"input": [{"type": "custom_tool_call_output", "call_id": "c", "output": "X"}]},
        1,
    ),
    (
        "responses",
        {"prompt": {"id": "p", "variables": {"a": "X", "b": {"type": "input_text", "text": "X"}}}},
        2,
    ),
    (  # the model reads an MCP server's description (probe p16); its URL and headers no
        "responses",
        {
            "input": "hi",
            "tools": [
                {"type": "mcp", "server_label": "s", "server_url": "https://mcp.example/y"}
                | {"server_description": "X", "headers": {"h": "v"}}
            ],
        },
        1,
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "count"), REQUESTS)
def test_every_request_text_is_scanned(endpoint, body, count):
    """Each text a request sends upstream goes through the scan (here: X becomes [R])."""
    out = rewrite_request(endpoint, body, mark)
    assert len(redacted_paths(out)) == count, redacted_paths(out)
    assert "X" not in json.dumps(out).replace("[R]", "")


def test_identifiers_are_not_scanned():
    """metadata and user are identifiers: passed as written."""
    body = {"messages": [], "metadata": {"k": "X"}, "user": "X"}
    assert rewrite_request("chat", body, mark) is body


ANSWERS = [
    ("chat", {"choices": [{"message": {"content": "hi", "reasoning_content": "X"}}]}),
    ("chat", {"choices": [{"message": {"content": "hi", "reasoning": "X"}}]}),
    (
        "chat",
        {"choices": [{"message": {"content": None, "audio": {"id": "a", "transcript": "X"}}}]},
    ),
    (
        "chat",
        {
            "choices": [
                {
                    "message": {
                        "content": "hi",
                        "annotations": [
                            {
                                "type": "url_citation",
                                "url_citation": {"title": "X", "url": "https://X"},
                            }
                        ],
                    }
                }
            ]
        },
    ),
    (
        "responses",
        {"output": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "X"}]}]},
    ),
    (
        "responses",
        {"output": [{"type": "message", "content": [{"type": "refusal", "refusal": "X"}]}]},
    ),
    (
        "responses",
        {
            "output": [
                {
                    "type": "message",
                    "content": [
                        {
                            "type": "output_text",
                            "text": "hi",
                            "annotations": [{"type": "url_citation", "title": "X", "url": "u"}],
                        }
                    ],
                }
            ]
        },
    ),
    ("responses", {"output": [{"type": "custom_tool_call", "input": "X"}]}),
    (
        "chat",
        {
            "choices": [
                {
                    "message": {
                        "content": None,
                        "tool_calls": [{"type": "custom", "custom": {"name": "g", "input": "X"}}],
                    }
                }
            ]
        },
    ),
]


@pytest.mark.parametrize(("endpoint", "payload"), ANSWERS)
def test_every_answer_text_is_scanned(endpoint, payload):
    out = rewrite_answer(endpoint, payload, mark)
    assert redacted_paths(out), out


@pytest.mark.parametrize(
    "event",
    [
        {"type": "response.reasoning_summary_text.done", "text": "X"},
        {
            "type": "response.reasoning_summary_part.done",
            "part": {"type": "summary_text", "text": "X"},
        },
        {"type": "response.refusal.done", "refusal": "X"},
        {"type": "response.custom_tool_call_input.done", "input": "X"},
        {"type": "response.output_text.annotation.added", "annotation": {"title": "X", "url": "u"}},
    ],
)
def test_every_whole_text_of_a_responses_event_is_scanned(event):
    assert redacted_paths(rewrite_response_event(event, mark))


CHAT_LOGPROBS = {
    "content": [
        {
            "token": "bob@",
            "logprob": -0.1,
            "bytes": list(b"bob@"),
            "top_logprobs": [{"token": "bob@", "logprob": -0.1, "bytes": list(b"bob@")}],
        },
        {
            "token": "example.com",
            "logprob": -0.1,
            "bytes": list(b"example.com"),
            "top_logprobs": [],
        },
    ],
    "refusal": None,
}


def test_a_redacted_chat_choice_loses_its_logprobs():
    """The tokens spell the secret: a choice whose text a rule rewrote carries none."""
    payload = {
        "choices": [
            {"index": 0, "message": {"content": EMAIL}, "logprobs": CHAT_LOGPROBS},
            {"index": 1, "message": {"content": "clean"}, "logprobs": {"content": []}},
        ]
    }
    decision = check_answer(REDACT_EMAIL, "chat", payload)
    assert isinstance(decision, Passed)
    first, second = decision.body["choices"]
    assert first["logprobs"] is None and first["message"]["content"] == "[REDACTED:email]"
    assert second["logprobs"] == {"content": []}  # untouched text keeps its logprobs
    assert "bob@" not in json.dumps(decision.body)


def test_a_redacted_completion_loses_its_logprobs():
    payload = {
        "choices": [
            {
                "index": 0,
                "text": EMAIL,
                "logprobs": {
                    "tokens": ["bob@", "example.com"],
                    "token_logprobs": [-0.1, -0.1],
                    "top_logprobs": [{"bob@": -0.1}, {"example.com": -0.1}],
                    "text_offset": [0, 4],
                },
            }
        ]
    }
    decision = check_answer(REDACT_EMAIL, "completions", payload)
    assert isinstance(decision, Passed)
    assert decision.body["choices"][0]["logprobs"] is None
    assert "bob@" not in json.dumps(decision.body)


def test_a_redacted_responses_text_part_loses_its_logprobs():
    part = {
        "type": "output_text",
        "text": EMAIL,
        "annotations": [],
        "logprobs": [{"token": "bob@", "logprob": -0.1, "bytes": [], "top_logprobs": []}],
    }
    decision = check_answer(
        REDACT_EMAIL, "responses", {"output": [{"type": "message", "content": [part]}]}
    )
    assert isinstance(decision, Passed)
    assert decision.body["output"][0]["content"][0]["logprobs"] == []
    event = {"type": "response.output_text.done", "text": EMAIL, "logprobs": part["logprobs"]}
    assert rewrite_response_event(event, replacing(EMAIL))["logprobs"] == []


ESCAPED = '{"to": "bob\\u0040example.com", "cc": "x\\u0040y.org"}'


def test_escaped_arguments_are_redacted_in_answers_and_requests():
    """`\\u0040` is `@` to the client's JSON reader: the scan reads it so too."""
    answer = {
        "choices": [
            {
                "message": {
                    "tool_calls": [{"function": {"name": "send", "arguments": ESCAPED}}],
                    "function_call": {"name": "send", "arguments": ESCAPED},
                }
            }
        ]
    }
    decision = check_answer(REDACT_EMAIL, "chat", answer)
    assert isinstance(decision, Passed)
    message = decision.body["choices"][0]["message"]
    for arguments in (
        message["tool_calls"][0]["function"]["arguments"],
        message["function_call"]["arguments"],
    ):
        assert json.loads(arguments) == {"to": "[REDACTED:email]", "cc": "[REDACTED:email]"}
    request = {
        "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": ESCAPED}]
    }
    decision = check_request(REDACT_EMAIL, "responses", request)
    assert isinstance(decision, Passed)
    assert "example" not in decision.body["input"][0]["arguments"]


def test_clean_escaped_arguments_are_sent_as_written():
    arguments = '{"name": "caf\\u00e9 \\"x\\""}'
    body = {
        "messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": arguments}}]}]
    }
    assert check_request(REDACT_EMAIL, "chat", body).body is body


# Responses items beyond messages: (type, the item with an `X` wherever a text is).
RESPONSE_ITEMS = [
    ("local_shell_call_output", {"output": "X"}),
    ("local_shell_call", {"action": {"type": "exec", "command": ["echo", "X"], "env": {}}}),
    ("mcp_call", {"name": "t", "server_label": "s", "arguments": '{"a":"X"}', "output": "X"}),
    ("mcp_approval_request", {"name": "t", "server_label": "s", "arguments": '{"a":"X"}'}),
    (
        "code_interpreter_call",
        {"code": "X", "outputs": [{"type": "logs", "logs": "X"}, {"type": "image", "url": "u"}]},
    ),
    ("shell_call", {"action": {"commands": ["X"]}}),
    ("shell_call_output", {"output": [{"stdout": "X", "stderr": "X", "outcome": {}}]}),
    ("apply_patch_call", {"operation": {"type": "update_file", "path": "p", "diff": "X"}}),
    ("web_search_call", {"action": {"type": "search", "query": "X"}}),
    ("file_search_call", {"queries": ["X"], "results": [{"file_id": "f", "text": "X"}]}),
    ("image_generation_call", {"revised_prompt": "X", "result": "b64"}),
]


@pytest.mark.parametrize(("kind", "fields"), RESPONSE_ITEMS, ids=[k for k, _ in RESPONSE_ITEMS])
def test_every_responses_item_text_is_scanned(kind, fields):
    """Each text of each Responses item type, in a request's input and an answer's output."""
    item = {"type": kind, "id": "i", **fields}
    request = rewrite_request("responses", {"input": [item]}, mark)
    answer = rewrite_answer("responses", {"output": [item]}, mark)
    for out in (request["input"][0], answer["output"][0]):
        assert redacted_paths(out)
        assert "X" not in json.dumps(out).replace("[R]", "")


@pytest.mark.parametrize(
    "event",
    [
        {"type": "response.code_interpreter_call_code.done", "item_id": "i", "code": "X"},
        {"type": "response.mcp_call_arguments.done", "item_id": "i", "arguments": '{"a":"X"}'},
        {"type": "response.output_item.done", "item": {"type": "mcp_call", "output": "X"}},
    ],
)
def test_whole_texts_of_tool_item_events_are_scanned(event):
    assert redacted_paths(rewrite_response_event(event, mark))
