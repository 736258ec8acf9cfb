"""Stream error events cleaned of our keys (gateway/providers/redaction.py): whatever
the echo's spelling, wherever it sits in the event, and nothing else touched."""

from __future__ import annotations

import json

import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.providers.redaction import redact_error_events, secret_spellings

CONTENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":"see https://example.com and sk-notours123456"}}]}\n\n'
)
keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=40
)


def spelled(key: str, how: str) -> str:
    """`key` inside a JSON string, as an upstream might write it."""
    if how == "json":
        return json.dumps(key)[1:-1]
    if how == "json_slash":
        return json.dumps(key)[1:-1].replace("/", "\\/")
    return "".join(f"\\u{ord(c):04x}" for c in key)  # every character escaped


def leaks(out: bytes, key: str) -> bool:
    forms = {key, json.dumps(key)[1:-1], json.dumps(key)[1:-1].replace("/", "\\/")}
    forms.add("".join(f"\\u{ord(c):04x}" for c in key))
    return any(form.encode() in out for form in forms)


@settings(deadline=None)
@given(
    keys,
    st.sampled_from(["json", "json_slash", "unicode"]),
    st.sampled_from(["message", "code", "param", "sibling"]),
    st.sampled_from(["Bearer ", "api-key: ", ""]),
    st.booleans(),
)
def test_a_chat_error_event_never_keeps_our_key(key, how, where, prefix, after_content):
    """Anywhere in the event, in any JSON spelling: redacted, and the event still parses."""
    assume(key.encode() not in CONTENT)  # the model's own text is not an echo
    text = f"bad auth {prefix}{spelled(key, how)}!"
    error = {"message": "m", "type": "server_error", "param": None, "code": None}
    fields = (
        {"error": error, "detail": "@"} if where == "sibling" else {"error": {**error, where: "@"}}
    )
    event = b"data: " + orjson.dumps(fields).replace(b"@", text.encode()) + b"\n\n"
    chunk = (CONTENT if after_content else b"") + event
    out = redact_error_events(chunk, secret_spellings((key,)))
    assert not leaks(out, key)
    if after_content:
        assert out.startswith(CONTENT)  # the content event is the model's: untouched
    parsed = orjson.loads(out.split(b"\n\n")[-2][len(b"data: ") :])
    assert parsed["error"]["type"] == "server_error"
    said = orjson.dumps(parsed).decode()
    if where != "sibling":  # a sibling of `error` is no part of OpenAI's event: dropped
        assert "[redacted]" in said or "[upstream]" in said  # a URL-shaped key goes as a URL


def parses(event: bytes) -> bool:
    try:
        orjson.loads(event.removeprefix(b"data: "))
    except orjson.JSONDecodeError:
        return False
    return True


@settings(deadline=None)
@given(keys, st.sampled_from(["json", "json_slash", ""]))
def test_an_error_event_that_is_not_json_never_keeps_our_key(key, how):
    written = key if not how else spelled(key, how)
    event = b'data: {"error": "bad auth Bearer ' + written.encode() + b"\n\n"
    # The premise: the event does not parse (a raw key ending `"}` would close the JSON;
    # then it is cleaned as JSON, after decoding, which the test above covers).
    assume(not parses(event))
    assert not leaks(redact_error_events(event, secret_spellings((key,))), key)


def test_the_responses_error_event_and_a_failed_response_are_cleaned():
    key = "azure0key0with0no0shape"
    error = (
        b'event: error\ndata: {"type":"error","code":"x","message":"api-key: KEY","param":null}\n\n'
    )
    failed = (
        b'event: response.failed\ndata: {"type":"response.failed","response":{"id":"r",'
        b'"error":{"code":"server_error","message":"got KEY"}}}\n\n'
    )
    out = redact_error_events((error + failed).replace(b"KEY", key.encode()), (key,))
    assert key.encode() not in out
    assert out.count(b"[redacted]") == 2
    assert out.startswith(b"event: error\ndata: ")


def test_events_that_are_not_errors_pass_untouched():
    """A Responses event's `"error": null` is no error; content is never rewritten."""
    created = b'event: response.created\ndata: {"type":"response.created","response":{"error":null,"instructions":"KEY https://x"}}\n\n'
    chunk = CONTENT + created
    assert redact_error_events(chunk, ("KEY",)) is not None
    assert redact_error_events(chunk, ("KEY",)) == chunk


def test_a_clean_error_event_keeps_its_bytes():
    event = (
        b'data: {"error": {"message": "overloaded", "type": "server_error", "param": null, '
        b'"code": null}}\n\n'
    )
    assert redact_error_events(event, ("secret-key",)) == event


def error_of(event: bytes) -> object:
    return orjson.loads(redact_error_events(event, ("secret-key",))[len(b"data: ") :])


def test_an_upstream_error_event_leaves_in_openai_shape():
    """Whatever shape the upstream wrote its mid-stream error in, the client gets OpenAI's
    four fields (the SDK raises with the message), strings or null."""
    assert error_of(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n') == {
        "error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}
    }
    vllm = b'data: {"error": "Internal server error from vLLM engine", "object": "error"}\n\n'
    assert error_of(vllm) == {
        "error": {
            "message": "Internal server error from vLLM engine",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    tgi = b'data: {"error": "Input validation error", "error_type": "validation"}\n\n'
    assert error_of(tgi) == {
        "error": {
            "message": "Input validation error",
            "type": "validation",
            "param": None,
            "code": None,
        }
    }
    numbered = b'data: {"error": {"code": 500, "message": "", "extra": [1]}}\n\n'
    assert error_of(numbered) == {
        "error": {
            "message": "The upstream failed mid-stream.",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    keyed = b'data: {"error": {"message": "bad key secret-key", "code": "secret-key"}}\n\n'
    assert error_of(keyed) == {
        "error": {
            "message": "bad key [redacted]",
            "type": "api_error",
            "param": None,
            "code": "[redacted]",
        }
    }


def test_a_responses_error_event_keeps_its_own_shape():
    """Responses' `error` event has its fields at the top (`type: "error"`), as OpenAI
    sends it: cleaned, not reshaped."""
    event = b'event: error\ndata: {"type":"error","code":"x","message":"m","param":null}\n\n'
    assert redact_error_events(event, ("secret-key",)) == event


def test_the_message_is_cleaned_as_a_non_streamed_one_is():
    """Provider URLs, masked fragments of our key and key-shaped text go too."""
    message = "see https://internal.example/v1 with sk-abc****xyz and sk-other1234567"
    event = b"data: " + orjson.dumps({"error": {"message": message}}) + b"\n\n"
    out = orjson.loads(redact_error_events(event, ("k3y-value",))[len(b"data: ") :])
    assert out["error"]["message"] == "see [upstream] with [redacted] and [redacted]"


def test_an_incomplete_responses_reason_is_cleaned_and_its_output_kept():
    """A `response.incomplete` (or completed) event's `incomplete_details` and `error` are
    cleaned as a whole answer's are; the model's output in it is left as it came."""
    key = "azure0key0with0no0shape"
    output = [{"type": "message", "content": [{"text": "see https://example.com"}]}]
    event = {
        "type": "response.incomplete",
        "response": {
            "status": "incomplete",
            "output": output,
            "error": None,
            "incomplete_details": {"reason": f"quota {key} at https://up.internal/v1"},
        },
    }
    chunk = b"event: response.incomplete\ndata: " + orjson.dumps(event) + b"\n\n"
    out = redact_error_events(CONTENT + chunk, secret_spellings((key,)))
    assert out.startswith(CONTENT + b"event: response.incomplete\ndata: ")
    cleaned = orjson.loads(out[len(CONTENT) :].split(b"data: ", 1)[1])
    assert cleaned["response"]["incomplete_details"] == {"reason": "quota [redacted] at [upstream]"}
    assert cleaned["response"]["output"] == output


def test_an_ordinary_incomplete_reason_keeps_its_bytes():
    event = (
        b'event: response.incomplete\ndata: {"type":"response.incomplete","response":'
        b'{"error":null,"incomplete_details":{"reason":"max_output_tokens"}}}\n\n'
    )
    assert redact_error_events(event, ("secret-key",)) == event
