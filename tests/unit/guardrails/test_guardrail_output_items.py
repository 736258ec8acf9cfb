"""Every string of a Responses output item or stream event reaches the output rules, but
its structure (ids, `type`, `status`, indexes, sequence numbers) and base64 payloads (an
image generation's `result`, a partial image, audio): a key in a web search's sources, a
code interpreter's image URL, a file search result's filename or attributes, a citation's
filename, a shell call's environment, a patch's path, a reasoning part's own key, or an
event's own top-level key is blocked by a block rule and redacted in place by a redact
rule, in a whole answer and on a stream. Chat's streamed legacy `function_call.name` and
an `audio` object's own keys are scanned too (its base64 `data` is not)."""

import json
from typing import Any

import orjson
import pytest

from gateway.guardrails.check import check_answer
from gateway.guardrails.decision import Blocked, Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.support.output_stream import DONE, scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
MARK = "[REDACTED:secrets]"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])

# (case, an output item with the key in an unusual field, the path to that field)
ITEMS: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    (
        "web_search-sources-url",
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {
                "type": "search",
                "query": "q",
                "sources": [{"type": "url", "url": f"https://example.com/{KEY}"}],
            },
        },
        ("action", "sources", 0, "url"),
    ),
    (
        "web_search-open-page-url",
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "open_page", "url": f"https://example.com/{KEY}"},
        },
        ("action", "url"),
    ),
    (
        "web_search-find-pattern",
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "find", "url": "https://example.com", "pattern": f"key {KEY}"},
        },
        ("action", "pattern"),
    ),
    (
        "code_interpreter-output-url",
        {
            "type": "code_interpreter_call",
            "id": "ci_1",
            "status": "completed",
            "container_id": "cntr_1",
            "code": "print(1)",
            "outputs": [{"type": "image", "url": f"https://example.com/{KEY}.png"}],
        },
        ("outputs", 0, "url"),
    ),
    (
        "file_search-result-filename",
        {
            "type": "file_search_call",
            "id": "fs_1",
            "status": "completed",
            "queries": ["q"],
            "results": [{"file_id": "file_1", "filename": f"{KEY}.txt", "score": 0.5, "text": "t"}],
        },
        ("results", 0, "filename"),
    ),
    (
        "file_search-result-attributes",
        {
            "type": "file_search_call",
            "id": "fs_1",
            "status": "completed",
            "queries": ["q"],
            "results": [{"file_id": "file_1", "text": "t", "attributes": {"owner": f"k {KEY}"}}],
        },
        ("results", 0, "attributes", "owner"),
    ),
    (
        "message-file-citation-filename",
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "hi",
                    "annotations": [
                        {"type": "file_citation", "file_id": "f", "filename": f"{KEY}.pdf"}
                        | {"index": 0}
                    ],
                }
            ],
        },
        ("content", 0, "annotations", 0, "filename"),
    ),
    (
        "local_shell-env",
        {
            "type": "local_shell_call",
            "id": "lsh_1",
            "call_id": "call_1",
            "status": "completed",
            "action": {"type": "exec", "command": ["ls"], "env": {"TOKEN": KEY}},
        },
        ("action", "env", "TOKEN"),
    ),
    (
        "local_shell-working-directory",
        {
            "type": "local_shell_call",
            "id": "lsh_1",
            "call_id": "call_1",
            "status": "completed",
            "action": {"type": "exec", "command": ["ls"], "working_directory": f"/t/{KEY}"},
        },
        ("action", "working_directory"),
    ),
    (
        "apply_patch-path",
        {
            "type": "apply_patch_call",
            "id": "ap_1",
            "call_id": "call_1",
            "status": "completed",
            "operation": {"type": "update_file", "path": f"src/{KEY}.py", "diff": "-a\n+b"},
        },
        ("operation", "path"),
    ),
    (
        "reasoning-summary-part-own-key",
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "t", "source": f"k {KEY}"}],
        },
        ("summary", 0, "source"),
    ),
    (
        "mcp_call-error",
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "server_label": "s",
            "name": "tool",
            "arguments": "{}",
            "error": f"failed with {KEY}",
        },
        ("error",),
    ),
    (
        "mcp_list_tools-description",
        {
            "type": "mcp_list_tools",
            "id": "mcpl_1",
            "server_label": "s",
            "tools": [{"name": "t", "description": f"uses {KEY}", "input_schema": {}}],
        },
        ("tools", 0, "description"),
    ),
    (
        "custom_tool_call-input",
        {
            "type": "custom_tool_call",
            "id": "ctc_1",
            "call_id": "call_1",
            "name": "tool",
            "input": f"key {KEY}",
        },
        ("input",),
    ),
    (
        "image_generation-setting",
        {
            "type": "image_generation_call",
            "id": "ig_1",
            "status": "completed",
            "result": "aGVsbG8=",
            "background": f"k {KEY}",
        },
        ("background",),
    ),
]
ITEM_IDS = [case for case, _, _ in ITEMS]


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def response(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "m",
        "output": [item],
    }


def sse(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


def events_of(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: {")]


@pytest.mark.parametrize(("case", "item", "path"), ITEMS, ids=ITEM_IDS)
def test_a_key_in_an_output_item_s_field_blocks_a_whole_answer(case, item, path):
    assert isinstance(check_answer(BLOCK, "responses", response(item)), Blocked)


@pytest.mark.parametrize(("case", "item", "path"), ITEMS, ids=ITEM_IDS)
def test_a_key_in_an_output_item_s_field_is_redacted_in_place(case, item, path):
    decision = check_answer(REDACT, "responses", response(item))
    assert isinstance(decision, Passed)
    assert KEY not in orjson.dumps(decision.body).decode()
    assert MARK in at(decision.body["output"][0], path)


@pytest.mark.parametrize("kind", ["response.output_item.added", "response.output_item.done"])
@pytest.mark.parametrize(("case", "item", "path"), ITEMS, ids=ITEM_IDS)
def test_a_key_in_a_streamed_output_item_s_field_ends_the_stream(case, item, path, kind):
    event = sse({"type": kind, "output_index": 0, "sequence_number": 1, "item": item})
    out, ended = scan_stream(BLOCK, [event, DONE], "responses")
    assert ended and KEY.encode() not in out


@pytest.mark.parametrize(("case", "item", "path"), ITEMS, ids=ITEM_IDS)
def test_a_key_in_a_streamed_output_item_s_field_is_redacted_in_place(case, item, path):
    kind = "response.output_item.done"
    event = sse({"type": kind, "output_index": 0, "sequence_number": 1, "item": item})
    out, ended = scan_stream(REDACT, [event, DONE], "responses")
    assert not ended and KEY.encode() not in out
    (sent,) = events_of(out)
    assert MARK in at(sent["item"], path)


def test_a_key_in_a_completed_response_s_output_item_ends_the_stream():
    item = ITEMS[0][1]
    event = sse({"type": "response.completed", "sequence_number": 9, "response": response(item)})
    out, ended = scan_stream(BLOCK, [event, DONE], "responses")
    assert ended and KEY.encode() not in out


PART = {"type": "output_text", "text": "", "annotations": []}
# (case, a stream event with the key in a top-level key or a part's own key, the path)
EVENTS: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    (
        "output_item.added-own-key",
        {"type": "response.output_item.added", "output_index": 0, "sequence_number": 1}
        | {"item": {"type": "message", "id": "msg_1", "content": []}, "note": f"k {KEY}"},
        ("note",),
    ),
    (
        "content_part.added-part-own-key",
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0}
        | {"content_index": 0, "sequence_number": 2, "part": {**PART, "source": f"k {KEY}"}},
        ("part", "source"),
    ),
    (
        "content_part.done-own-key",
        {"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0}
        | {"content_index": 0, "sequence_number": 2, "part": PART, "sources": [f"k {KEY}"]},
        ("sources", 0),
    ),
    (
        "output_text.done-own-key",
        {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0}
        | {"content_index": 0, "sequence_number": 3, "text": "hi", "citation": {"t": KEY}},
        ("citation", "t"),
    ),
    (
        "web_search_call.completed-own-key",
        {"type": "response.web_search_call.completed", "item_id": "ws_1", "output_index": 0}
        | {"sequence_number": 4, "query": f"k {KEY}"},
        ("query",),
    ),
    (
        "mcp_call.failed-own-key",
        {"type": "response.mcp_call.failed", "item_id": "mcp_1", "output_index": 0}
        | {"sequence_number": 4, "detail_text": f"k {KEY}"},
        ("detail_text",),
    ),
    (
        "output_text.delta-object-delta",
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0}
        | {"content_index": 0, "sequence_number": 5, "delta": {"text": f"k {KEY}"}},
        ("delta", "text"),
    ),
]
EVENT_IDS = [case for case, _, _ in EVENTS]


@pytest.mark.parametrize(("case", "event", "path"), EVENTS, ids=EVENT_IDS)
def test_a_key_in_a_stream_event_s_own_key_ends_the_stream(case, event, path):
    out, ended = scan_stream(BLOCK, [sse(event), DONE], "responses")
    assert ended and KEY.encode() not in out


@pytest.mark.parametrize(("case", "event", "path"), EVENTS, ids=EVENT_IDS)
def test_a_key_in_a_stream_event_s_own_key_is_redacted_in_place(case, event, path):
    out, ended = scan_stream(REDACT, [sse(event), DONE], "responses")
    assert not ended and KEY.encode() not in out
    (sent,) = events_of(out)
    assert MARK in at(sent, path)
    assert sent["type"] == event["type"] and sent["sequence_number"] == event["sequence_number"]


# Base64 payloads are not text: a run that happens to spell a key is left alone (as
# chat's audio `data` is), whole and streamed.
def test_an_image_generation_s_base64_result_is_not_scanned():
    item = {"type": "image_generation_call", "id": "ig_1", "status": "completed"}
    item |= {"result": f"iVBOR{KEY}w0KGgo="}
    decision = check_answer(BLOCK, "responses", response(item))
    assert isinstance(decision, Passed)
    assert decision.body["output"][0]["result"] == item["result"]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "response.image_generation_call.partial_image", "item_id": "ig_1"}
        | {"output_index": 0, "sequence_number": 3, "partial_image_index": 0}
        | {"partial_image_b64": f"iVBOR{KEY}w0KGgo="},
        {"type": "response.audio.delta", "sequence_number": 3, "delta": f"UklGR{KEY}AAA="},
    ],
    ids=["partial-image", "audio-delta"],
)
def test_a_streamed_base64_payload_is_not_scanned(event):
    raw = sse(event)
    out, ended = scan_stream(BLOCK, [raw, DONE], "responses")
    assert not ended and out == raw + DONE


# --- chat: a streamed legacy function call's name, an audio object's own keys ------


def chunk(delta: dict[str, Any]) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": None}
    body = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


CHAT_DELTAS: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    (
        "function_call-name",
        {"function_call": {"name": f"lookup-{KEY}", "arguments": ""}},
        ("function_call", "name"),
    ),
    (
        "audio-own-key",
        {"audio": {"id": "audio_1", "transcript": "hi", "note": f"k {KEY}"}},
        ("audio", "note"),
    ),
]
CHAT_IDS = [case for case, _, _ in CHAT_DELTAS]


@pytest.mark.parametrize(("case", "delta", "path"), CHAT_DELTAS, ids=CHAT_IDS)
def test_a_key_in_a_chat_delta_s_shaped_field_ends_the_stream(case, delta, path):
    out, ended = scan_stream(BLOCK, [chunk(delta), DONE])
    assert ended and KEY.encode() not in out


@pytest.mark.parametrize(("case", "delta", "path"), CHAT_DELTAS, ids=CHAT_IDS)
def test_a_key_in_a_chat_delta_s_shaped_field_is_redacted_in_place(case, delta, path):
    out, ended = scan_stream(REDACT, [chunk(delta), DONE])
    assert not ended and KEY.encode() not in out
    sent = events_of(out)
    assert any(MARK in str(at(e["choices"][0]["delta"], path)) for e in sent if e["choices"])


def test_chat_streamed_audio_data_is_not_scanned():
    """Base64 audio is not text; the transcript beside it still is."""
    raw = chunk({"audio": {"id": "audio_1", "data": f"UklGR{KEY}AAA=", "transcript": "hi"}})
    out, ended = scan_stream(BLOCK, [raw, DONE])
    assert not ended and f"UklGR{KEY}AAA=".encode() in out


def test_a_key_in_a_whole_chat_answer_s_audio_own_key_is_redacted():
    audio = {"id": "audio_1", "data": f"UklGR{KEY}AAA=", "expires_at": 1, "transcript": "hi"}
    message = {"role": "assistant", "content": None, "audio": audio | {"note": f"k {KEY}"}}
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "m"}
    answer |= {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    decision = check_answer(REDACT, "chat", answer)
    assert isinstance(decision, Passed)
    sent = decision.body["choices"][0]["message"]["audio"]
    assert MARK in sent["note"] and sent["data"] == audio["data"]
    assert isinstance(check_answer(BLOCK, "chat", answer), Blocked)
