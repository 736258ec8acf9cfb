"""Text a chat stream sends for a choice after that choice's `finish_reason` (or after
any point where its held text went out before the stream's end: an upstream's error
event, data no reader takes) is not a fresh text: it is dropped, so a key whose start
went out with the ending and whose rest came after never reaches a client that joins
every piece. A keep-alive comment or a usage chunk in the middle releases nothing."""

import json

import pytest

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner
from tests.support.output_stream import DONE, scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])


def event(content: str, finish: str | None = None, index: object = 0, name="content") -> bytes:
    choice = {"index": index, "delta": {name: content}, "finish_reason": finish}
    data = {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def completion(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "finish_reason": finish}
    return b"data: " + json.dumps({"id": "c", "choices": [choice]}).encode() + b"\n\n"


USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
COMMENT = b": keep-alive\n\n"


def run(scanner: Scanner, events: list[bytes], endpoint: str = "chat") -> tuple[str, bool]:
    """Every text piece the client got, joined in order, and whether the stream ended
    with an error."""
    out, ended = scan_stream(scanner, [*events, DONE], endpoint)
    texts = []
    for line in out.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                texts.append(choice.get("text") or "")
                texts.extend(v for v in (choice.get("delta") or {}).values() if type(v) is str)
    return "".join(texts), ended


@pytest.mark.parametrize("scanner", [BLOCK, REDACT], ids=["block", "redact"])
@pytest.mark.parametrize("cut", [4, 8, 12])
@pytest.mark.parametrize("name", ["content", "reasoning_content", "thinking"])
def test_a_key_whose_rest_comes_after_its_choice_s_finish_reason_never_leaves(scanner, cut, name):
    events = [
        event("hello there", name=name),
        event("my key " + KEY[:cut], "stop", name=name),
        event(KEY[cut:] + " and more", name=name),
    ]
    seen, _ = run(scanner, events)
    assert KEY not in seen and KEY[cut:] not in seen


@pytest.mark.parametrize("later_index", [0, "0", 0.0])
def test_text_after_the_finish_reason_is_dropped_whatever_the_index_spelling(later_index):
    events = [event("my key " + KEY[:8], "stop"), event(KEY[8:], index=later_index)]
    seen, ended = run(BLOCK, events)
    assert seen == "my key " + KEY[:8] and not ended


def test_a_completion_s_text_after_its_finish_reason_is_dropped():
    events = [completion("my key " + KEY[:8], "length"), completion(KEY[8:] + " more")]
    seen, _ = run(BLOCK, events, "completions")
    assert KEY not in seen


@pytest.mark.parametrize("between", [COMMENT, USAGE], ids=["comment", "usage"])
def test_a_keep_alive_or_usage_chunk_between_a_key_s_pieces_releases_nothing(between):
    """The key is still one text across them: blocked, never half sent."""
    events = [event("my key " + KEY[:8]), between, event(KEY[8:] + " more")]
    seen, ended = run(BLOCK, events)
    assert ended and KEY[:8] not in seen


def test_a_key_s_rest_after_an_error_event_is_dropped():
    error = b'data: {"error":{"message":"overloaded"}}\n\n'
    events = [event("my key " + KEY[:8]), error, event(KEY[8:] + " more")]
    seen, _ = run(BLOCK, events)
    assert KEY not in seen


def test_another_choice_goes_on_after_one_choice_ended():
    events = [event("one done", "stop", index=0), event("two ", index=1), event("goes on", index=1)]
    seen, ended = run(BLOCK, events)
    assert seen == "one donetwo goes on" and not ended


def test_an_empty_piece_after_the_finish_reason_passes():
    seen, ended = run(BLOCK, [event("all done", "stop"), event("")])
    assert seen == "all done" and not ended


def test_citations_after_the_finish_reason_are_still_reviewed():
    choice = {
        "index": 0,
        "delta": {"annotations": [{"type": "url_citation", "url_citation": {"title": KEY}}]},
        "finish_reason": None,
    }
    late = b"data: " + json.dumps({"id": "c", "choices": [choice]}).encode() + b"\n\n"
    step = OutputScanner(BLOCK, "chat", [])
    step.feed(event("done", "stop"))
    emit = step.feed(late)
    assert emit.end is not None and KEY.encode() not in emit.data
