"""A keyword phrase matches whatever whitespace separates its words (spaces, tabs, line
breaks, NBSP, em and ideographic spaces, line and paragraph separators, any run of
them), and its words written
together, as folding leaves them when a zero-width character stood between: in
requests, whole answers and streams, a stream cut at every position."""

import orjson
import pytest

from gateway.guardrails.check import check_request
from gateway.guardrails.decision import Blocked, Passed, review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import PHRASE_HOLD_CHARS, Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner
from tests.support.output_stream import scan_stream

WORDS = ("zebracorn", "project falcon")
BLOCK = Scanner(
    [RuleSource(Rule("words", DetectorKind.KEYWORDS, GuardAction.BLOCK), keywords=WORDS)]
)
REDACT = Scanner(
    [RuleSource(Rule("words", DetectorKind.KEYWORDS, GuardAction.REDACT), keywords=WORDS)]
)
SINGLE = Scanner(
    [RuleSource(Rule("word", DetectorKind.KEYWORDS, GuardAction.BLOCK), keywords=("project",))]
)

# The tester's cases: each reads as the phrase.
SEPARATED = [
    "project  falcon",
    "project\nfalcon",
    "project\r\nfalcon",
    "project\tfalcon",
    "project\u200bfalcon",
    "project \u200b falcon",
    "project\u00a0\u00a0falcon",
    "project\u2003falcon",
    "project\u3000\n falcon",
    "PROJECT \t\r\n FALCON",
    "projectfalcon",
    "project" + " " * 200 + "falcon",
    "project\u2028falcon",  # line and paragraph separators fold to a line break
    "project\u2029falcon",
    "project\u1680falcon",  # the ogham space mark to a space
]
# Runs of whitespace a stream holds whole: long ones, and invisible characters in them.
STREAMED = [
    *SEPARATED,
    "project" + " \u200b" * 100 + "falcon",
    "project" + "\n" * 250 + "falcon",
    "project" + " " * PHRASE_HOLD_CHARS + "falcon",  # the longest run a stream must hold
]


def chat(piece: str) -> bytes:
    choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"


def content(out: bytes) -> str:
    text = ""
    for line in out.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                text += (choice.get("delta") or {}).get("content") or ""
    return text


@pytest.mark.parametrize("phrase", SEPARATED, ids=ascii)
def test_a_request_with_the_phrase_spaced_otherwise_is_blocked(phrase):
    """Any whitespace between the words, or an invisible one: the request is refused."""
    body = {"messages": [{"role": "user", "content": f"tell me about {phrase} today"}]}
    decision = check_request(BLOCK, "chat", body)
    assert isinstance(decision, Blocked) and decision.rule == "words"


@pytest.mark.parametrize("phrase", SEPARATED, ids=ascii)
def test_a_whole_answer_with_the_phrase_spaced_otherwise_is_redacted_whole(phrase):
    """An answer's phrase, whatever separates its words, is replaced by one marker."""
    assert review(REDACT, f"It is {phrase}, sir.").text == "It is [REDACTED:words], sir."
    assert review(BLOCK, f"It is {phrase}, sir.").blocked_by is not None


@pytest.mark.parametrize("phrase", STREAMED, ids=lambda p: ascii(p)[:40])
def test_a_streamed_phrase_cut_at_every_position_blocks_before_it_leaves(phrase):
    """Cut anywhere, whitespace cut too: the stream ends and neither word went out."""
    text = f"say {phrase} now"
    for split in range(1, len(text)):
        out, ended = scan_stream(BLOCK, [chat(text[:split]), chat(text[split:])])
        released = content(out)
        assert ended, split
        assert "project" not in released.lower() and "falcon" not in released.lower(), split


@pytest.mark.parametrize("phrase", STREAMED, ids=lambda p: ascii(p)[:40])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_a_phrase_streamed_in_small_pieces_blocks(phrase, size):
    """One to five characters an event, the whitespace run spread over many events."""
    text = f"say {phrase} now"
    out, ended = scan_stream(BLOCK, [chat(text[i : i + size]) for i in range(0, len(text), size)])
    assert ended and "falcon" not in content(out).lower()


@pytest.mark.parametrize("split", range(1, 40))
def test_a_streamed_phrase_is_redacted_whole(split):
    """A redact rule: the client reads the marker where the phrase was, cut anywhere."""
    text = "say project \r\n\u00a0 falcon, then more"
    out, ended = scan_stream(REDACT, [chat(text[:split]), chat(text[split:])])
    assert not ended and content(out) == "say [REDACTED:words], then more"


@pytest.mark.parametrize("size", [1, 64, 300])
def test_a_whitespace_run_far_past_the_cap_is_a_break_on_a_stream_only(size):
    """Past PHRASE_HOLD_CHARS (how far depends on the pieces: a long hold is rescanned as
    it doubles) the stream releases the first word and the words pass there; whole texts
    have no cap."""
    text = "say project" + " " * (3 * PHRASE_HOLD_CHARS) + "falcon now"
    assert review(BLOCK, text).blocked_by is not None
    out, ended = scan_stream(BLOCK, [chat(text[i : i + size]) for i in range(0, len(text), size)])
    assert not ended and content(out) == text
    assert BLOCK.window_chars == len("project falcon") + PHRASE_HOLD_CHARS


def test_a_long_whitespace_run_is_held_at_most_the_window():
    """Whitespace after the first word, event after event: what is held stays bounded by
    the window (a long hold is rescanned as it doubles: stream_scanner.py)."""
    pieces = ["say project", *([" " * 64] * 40)]
    step = OutputScanner(BLOCK, "chat", [])
    streamed = sent = 0
    for piece in pieces:
        emit = step.feed(chat(piece))
        streamed, sent = streamed + len(piece), sent + len(content(emit.data))
        assert emit.end is None and emit.offload is None
        assert streamed - sent <= 2 * BLOCK.window_chars + 64


@pytest.mark.parametrize(
    "text",
    [
        "projects falcon",
        "project falconry",
        "myproject falcon",
        "project_falcon",
        "project-falcon",
        "project, falcon",
        "zebra corn",
        "zebracorns",
    ],
)
def test_other_words_still_pass(text):
    """Whole words only: a phrase's first and last words keep their word boundaries."""
    assert review(BLOCK, f"a {text} b").fired == ()
    body = {"messages": [{"role": "user", "content": f"a {text} b"}]}
    assert isinstance(check_request(BLOCK, "chat", body), Passed)


@pytest.mark.parametrize(
    "text", ["projectfalcon", "project\u200bfalcon", "project  falcon", "a project b"]
)
def test_a_single_word_keyword_is_unchanged(text):
    """A one-word keyword matches as before: `project` in `projectfalcon` is no word;
    with a zero-width space between them, it is one (normalize.py: read as a gap too)."""
    found = [f.rule.name for f in SINGLE.find(text)]
    assert found == ([] if text == "projectfalcon" else ["word"])
    assert SINGLE.window_chars == len("project") + PHRASE_HOLD_CHARS


def test_a_word_with_invisible_characters_inside_blocks_on_a_stream():
    """Fifty zero-width spaces inside a word fold away; the stream holds the word whole."""
    text = "say zebra" + "\u200b" * 50 + "corn now"
    out, ended = scan_stream(BLOCK, [chat(c) for c in text])
    assert ended and "zebra" not in content(out)


def tool_call(arguments: str) -> bytes:
    call = {"index": 0, "function": {"arguments": arguments}}
    choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"


def response(piece: str) -> bytes:
    data = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0}
    data |= {"content_index": 0, "delta": piece}
    return b"event: response.output_text.delta\ndata: " + orjson.dumps(data) + b"\n\n"


@pytest.mark.parametrize("phrase", ["project\r\n\tfalcon", "project\u200bfalcon"], ids=ascii)
def test_a_phrase_in_streamed_arguments_blocks_cut_anywhere(phrase):
    """Tool-call arguments are JSON (`\\r\\n` escaped): read as their reader will, cut
    anywhere, even inside an escape, the phrase ends the stream."""
    arguments = orjson.dumps({"q": f"about {phrase} now"}).decode()
    for split in range(1, len(arguments)):
        pieces = [arguments[:split], arguments[split:]]
        out, ended = scan_stream(BLOCK, [tool_call(p) for p in pieces])
        assert ended and b"falcon" not in out, split


@pytest.mark.parametrize("split", range(1, len("say project\n\nfalcon now")))
def test_a_phrase_in_a_responses_stream_blocks_cut_anywhere(split):
    """The Responses API's output text deltas: the same hold, the same block."""
    text = "say project\n\nfalcon now"
    events = [response(text[:split]), response(text[split:])]
    out, ended = scan_stream(BLOCK, events, "responses")
    assert ended and b"falcon" not in out and b"project" not in out
