"""The stream step on every text field an answer streams: reasoning, refusals, audio
transcripts, legacy function calls, Responses summaries; logprobs never carry the text
the window held or redacted; escaped arguments are scanned decoded, cut anywhere."""

import json

import orjson
import pytest

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.unit.guardrails.test_stream_scanner import run

EMAIL = "bob@example.com"
REDACT = Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))])
SENTENCE = f"Mail {EMAIL} today."


def chat_chunk(delta: dict, logprobs=None, finish=None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def deltas(out: bytes) -> list[dict]:
    found = []
    for block in out.split(b"\n\n"):
        _, _, data = block.partition(b"data: ")
        if data.startswith(b"{"):
            found.append(orjson.loads(data))
    return found


def joined(out: bytes, get) -> str:
    return "".join(get(event) or "" for event in deltas(out))


FIELDS = [
    ("reasoning_content", lambda d: {"reasoning_content": d}, lambda d: d.get("reasoning_content")),
    ("reasoning", lambda d: {"reasoning": d}, lambda d: d.get("reasoning")),
    ("refusal", lambda d: {"refusal": d}, lambda d: d.get("refusal")),
    (
        "audio",
        lambda d: {"audio": {"id": "a", "transcript": d}},
        lambda d: (d.get("audio") or {}).get("transcript"),
    ),
    (
        "custom_tool_call",
        lambda d: {"tool_calls": [{"index": 0, "type": "custom", "custom": {"input": d}}]},
        lambda d: "".join(
            (c.get("custom") or {}).get("input") or "" for c in d.get("tool_calls") or ()
        ),
    ),
    (
        "function_call",
        lambda d: {"function_call": {"arguments": d}},
        lambda d: (d.get("function_call") or {}).get("arguments"),
    ),
]


@pytest.mark.parametrize(("name", "make", "get"), FIELDS, ids=[f[0] for f in FIELDS])
@pytest.mark.parametrize("split", range(1, len(SENTENCE)))
def test_each_streamed_chat_field_is_redacted_split_anywhere(name, make, get, split):
    events = [
        chat_chunk(make(SENTENCE[:split])),
        chat_chunk(make(SENTENCE[split:])),
        chat_chunk({}, finish="stop"),
        b"data: [DONE]\n\n",
    ]
    out, end, _ = run(REDACT, "chat", events)
    assert end is None
    text = joined(
        out, lambda e: get(e["choices"][0].get("delta") or {}) if e.get("choices") else None
    )
    assert text == "Mail [REDACTED:email] today."
    assert b"example" not in out


def test_streamed_logprobs_are_dropped():
    """A chunk's tokens spell its text as it came: none reach the client."""
    pieces = ["Mail bob", "@example", ".com today."]
    events = [
        chat_chunk(
            {"content": p},
            logprobs={
                "content": [
                    {"token": p, "logprob": -0.1, "bytes": list(p.encode()), "top_logprobs": []}
                ]
            },
        )
        for p in pieces
    ]
    events += [chat_chunk({}, finish="stop"), b"data: [DONE]\n\n"]
    out, _, _ = run(REDACT, "chat", events)
    assert b"example" not in out and b"bob" not in out
    assert all(e["choices"][0].get("logprobs") is None for e in deltas(out) if e.get("choices"))


def test_completions_streamed_logprobs_are_dropped():
    chunk = {
        "id": "c",
        "object": "text_completion",
        "choices": [
            {
                "index": 0,
                "text": EMAIL,
                "logprobs": {"tokens": ["bob@", "example.com"]},
                "finish_reason": None,
            }
        ],
    }
    out, _, _ = run(
        REDACT, "completions", [b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: [DONE]\n\n"]
    )
    assert b"example" not in out


def response_event(kind: str, **fields) -> bytes:
    return (
        f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"
    )


@pytest.mark.parametrize(
    "kind",
    [
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.refusal.delta",
        "response.custom_tool_call_input.delta",
        "response.output_text.delta",
    ],
)
@pytest.mark.parametrize("split", [3, 7, 9, 12, 18])
def test_responses_text_deltas_are_redacted_and_lose_logprobs(kind, split):
    logprobs = [{"token": "bob@example.com", "logprob": -0.1, "bytes": [], "top_logprobs": []}]
    events = [
        response_event(
            kind, item_id="i", summary_index=0, delta=SENTENCE[:split], logprobs=logprobs
        ),
        response_event(
            kind, item_id="i", summary_index=0, delta=SENTENCE[split:], logprobs=logprobs
        ),
        response_event(
            kind.replace(".delta", ".done"), item_id="i", text=SENTENCE, logprobs=logprobs
        ),
    ]
    out, end, _ = run(REDACT, "responses", events)
    assert end is None
    assert b"example" not in out
    assert joined(out, lambda e: e.get("delta")) == "Mail [REDACTED:email] today."


ESCAPED = json.dumps({"to": EMAIL, "note": "caf\u00e9"}).replace("@", "\\u0040")


@pytest.mark.parametrize("split", range(1, len(ESCAPED)))
def test_escaped_tool_arguments_split_anywhere_are_redacted(split):
    """`bob\\u0040example.com` cut anywhere, even inside the escape: redacted, valid JSON."""
    make = lambda a: {"tool_calls": [{"index": 0, "function": {"arguments": a}}]}  # noqa: E731
    events = [
        chat_chunk(make(ESCAPED[:split])),
        chat_chunk(make(ESCAPED[split:])),
        b"data: [DONE]\n\n",
    ]
    out, end, _ = run(REDACT, "chat", events)
    assert end is None
    arguments = joined(
        out,
        lambda e: (
            "".join(
                c["function"]["arguments"] for c in e["choices"][0]["delta"].get("tool_calls") or ()
            )
            if e.get("choices")
            else None
        ),
    )
    assert json.loads(arguments) == {"to": "[REDACTED:email]", "note": "caf\u00e9"}


@pytest.mark.parametrize("split", range(1, len(ESCAPED), 3))
def test_escaped_responses_arguments_split_anywhere_are_redacted(split):
    kind = "response.function_call_arguments.delta"
    events = [
        response_event(kind, item_id="f", output_index=0, delta=ESCAPED[:split]),
        response_event(kind, item_id="f", output_index=0, delta=ESCAPED[split:]),
        response_event("response.function_call_arguments.done", item_id="f", arguments=ESCAPED),
    ]
    out, _, _ = run(REDACT, "responses", events)
    assert json.loads(joined(out, lambda e: e.get("delta")))["to"] == "[REDACTED:email]"
    done = deltas(out)[-1]
    assert json.loads(done["arguments"])["to"] == "[REDACTED:email]"


@pytest.mark.parametrize("learned", [True, False])
def test_streamed_url_citations_are_redacted(learned):
    """A delta's URL citations come whole: their url and title are reviewed whole."""
    citation = {"title": "to " + EMAIL, "url": "mailto:" + EMAIL, "start_index": 0}
    events = [
        chat_chunk({"content": "See"}),
        chat_chunk({"content": " it"}),
        chat_chunk({"annotations": [{"type": "url_citation", "url_citation": citation}]}),
        chat_chunk({}, finish="stop"),
        b"data: [DONE]\n\n",
    ]
    out, end, hits = run(REDACT, "chat", events, learn=learned)
    assert end is None and b"example" not in out
    found = [
        a["url_citation"]
        for e in deltas(out)
        for a in (e["choices"][0].get("delta") or {}).get("annotations") or ()
    ]
    assert found == [{**citation, "title": "to [REDACTED:email]", "url": "mailto:[REDACTED:email]"}]
    assert [h.rule for h in hits] == ["email"]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("response.code_interpreter_call_code.delta", SENTENCE),
        ("response.mcp_call_arguments.delta", json.dumps({"to": SENTENCE})),
    ],
)
@pytest.mark.parametrize("split", [3, 7, 9, 12, 18])
def test_responses_tool_deltas_are_redacted(kind, text, split):
    """Code interpreter code and MCP arguments stream as growing texts."""
    events = [
        response_event(kind, item_id="i", output_index=0, delta=text[:split]),
        response_event(kind, item_id="i", output_index=0, delta=text[split:]),
        response_event(kind.replace(".delta", ".done"), item_id="i", code=text, arguments=text),
    ]
    out, end, _ = run(REDACT, "responses", events)
    assert end is None and b"example" not in out
    assert "[REDACTED:email]" in joined(out, lambda e: e.get("delta"))
