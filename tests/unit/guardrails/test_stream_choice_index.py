"""A streamed choice whose `index` is not a plain integer ("0", missing, null, a bool,
a float, a huge or negative number, an object): its text is scanned with the rest of
the same choice's text, never passed on raw, and a held piece goes out in a chat event
that carries the index as the upstream wrote it."""

import json

import orjson
import pytest

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import choice_key
from tests.support.output_stream import DONE, scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])


def event(index: str | None, content: str, finish: str = "null") -> bytes:
    """A chat chunk with `index` written as these JSON bytes (None: no index)."""
    spelled = "" if index is None else f',"index":{index}'
    data = '{"id":"c","object":"chat.completion.chunk","choices":[{"delta":{"content":%s}%s,"finish_reason":%s}]}'
    return b"data: " + (data % (json.dumps(content), spelled, finish)).encode() + b"\n\n"


def run(scanner: Scanner, events: list[bytes]) -> tuple[bytes, bool]:
    """What the client gets, and whether the stream ended with an error."""
    return scan_stream(scanner, [*events, DONE])


def contents(out: bytes) -> str:
    """Every choice's content the client got, in order, whatever its index."""
    texts = []
    for line in out.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                texts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(texts)


ODD = ['"0"', "0.0", "-0", "false", None, "null", '" 0"', '"00"', "0e0"]


@pytest.mark.parametrize("odd", ODD)
@pytest.mark.parametrize("cut", [4, 9, 20])
def test_a_key_split_between_index_0_and_another_spelling_of_it_is_blocked(odd, cut):
    """The same choice spelled two ways is one text: the key split across them blocks."""
    pieces = ["my key " + KEY[:cut], KEY[cut:] + " then", "more"]
    for first, second in ((odd, "0"), ("0", odd)):
        out, ended = run(
            BLOCK, [event(first, pieces[0]), event(second, pieces[1]), event(first, pieces[2])]
        )
        assert ended and KEY not in contents(out), (first, second)


@pytest.mark.parametrize(
    "odd", ['"0"', "true", "-1", "1e400", "18446744073709551616", "[0]", '{"a":1}', '"x"', "1.5"]
)
def test_the_text_of_an_oddly_indexed_choice_is_scanned(odd):
    """A whole key in a choice of any index is blocked, never sent raw (the stream does
    not crash on an index that is a list or an object)."""
    out, ended = run(BLOCK, [event(odd, "my key " + KEY), event(odd, " more")])
    assert ended and KEY.encode() not in out


@pytest.mark.parametrize("odd", ['"0"', '"x"', "[0]", "null"])
def test_a_held_piece_goes_out_in_a_chat_event_with_the_index_as_written(odd):
    out, ended = run(REDACT, [event(odd, "hello AKIA"), event(odd, "")])
    assert not ended
    last = [json.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")][-1]
    assert last["choices"][0]["delta"]["content"].endswith("AKIA")
    assert last["choices"][0]["index"] == orjson.loads(odd)


def test_a_key_redacted_across_a_huge_index_event():
    """An index orjson cannot read (1e400) is read as the stdlib reads it: scanned."""
    out, ended = run(REDACT, [event("1e400", "my key " + KEY + " ok")])
    assert not ended and KEY not in out.decode() and "[REDACTED:secrets]" in contents(out)


@pytest.mark.parametrize(
    ("index", "position", "key"),
    [
        (0, 0, 0),
        (3, 0, 3),
        ("0", 1, 0),
        (" 2 ", 0, 2),
        ("00", 0, 0),
        (0.0, 0, 0),
        (True, 0, 1),
        (None, 2, 2),
        (-1, 0, -1),
        (10**30, 0, 10**30),
        (1e30, 0, int(1e30)),
        ("x", 0, "?"),
        ([0], 0, "?"),
        ({"a": 1}, 0, "?"),
        (1.5, 0, "?"),
        (float("inf"), 0, "?"),
    ],
)
def test_choice_key(index, position, key):
    assert choice_key(index, position) == key
