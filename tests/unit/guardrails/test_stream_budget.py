"""The stream step's cost bounds: a chunk goes on the event loop only under check.py's
inline budget (else `Emit.offload`, for a thread, with nothing of it scanned or changed
here), and a stream makes at most MAX_MATCHES matches, then ends naming the cap."""

import orjson

from gateway.guardrails.check import INLINE_CHARS, INLINE_MATCHES, MAX_MATCHES
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.refusals import TooManyMatches
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner
from tests.unit.guardrails.test_stream_scanner import chat_event, chat_text, run

REDACT = Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))])


def test_a_clean_event_is_scanned_on_the_loop():
    step = OutputScanner(REDACT, "chat", [])
    for word in ("Hello", " there", " friend", "."):
        assert step.feed(chat_event(word)).offload is None


def test_an_event_denser_than_the_inline_budget_moves_to_a_thread_unchanged():
    """Over INLINE_MATCHES matches in one small event: undone and handed off; the thread
    gives what the loop would have."""
    dense = "a@b.co " * (INLINE_MATCHES + 10)
    events = [chat_event("Mail "), chat_event("bob"), chat_event(dense), chat_event("end.")]
    reference, _, _ = run(REDACT, "chat", [*events, chat_event(finish="stop")], learn=False)
    hits: list = []
    step = OutputScanner(REDACT, "chat", hits)
    out = step.feed(events[0]).data + step.feed(events[1]).data
    emit = step.feed(events[2])
    assert emit.offload is not None and emit.data == b"" and hits == []
    out += emit.offload().data + step.feed(events[3]).data
    out += step.feed(chat_event(finish="stop")).data + step.finish().data
    assert chat_text(out) == chat_text(reference)
    assert chat_text(out).count("[REDACTED:email]") == INLINE_MATCHES + 10


def test_a_large_event_moves_to_a_thread_unscanned():
    step = OutputScanner(REDACT, "chat", [])
    big = chat_event("word " * (INLINE_CHARS // 5 + 1))
    emit = step.feed(big)
    assert emit.offload is not None and step._budget.left == MAX_MATCHES
    assert chat_text(emit.offload().data + step.finish().data) == "word " * (INLINE_CHARS // 5 + 1)


def test_a_stream_past_the_match_cap_ends_naming_it():
    """More than MAX_MATCHES matches over a stream's events: it ends with the refusal
    naming the rule and the cap, and none of what passed the cap is sent."""
    event = chat_event("a@b.co " * 20_000)
    out, end, hits = run(REDACT, "chat", [event] * 6 + [chat_event("SENTINEL")])
    assert isinstance(end, TooManyMatches)
    assert f"more than {MAX_MATCHES}" in end.message and "'email'" in end.message
    assert b"a@b.co" not in out and b"SENTINEL" not in out
    assert [(h.rule, h.action) for h in hits] == [
        ("email", GuardAction.REDACT),
        ("email", GuardAction.BLOCK),  # as a refused request or answer records it
    ]
    assert out.count(b"[REDACTED:email]") <= MAX_MATCHES


def test_the_cap_ends_a_stream_whose_one_event_is_over_it():
    emit = OutputScanner(REDACT, "chat", []).feed(chat_event("a@b.co " * (MAX_MATCHES + 1)))
    assert emit.offload is not None
    ended = emit.offload()
    assert isinstance(ended.end, TooManyMatches) and b"a@b.co" not in ended.data
    assert orjson.dumps(ended.end.message)  # OpenAI-shaped by errors.py
