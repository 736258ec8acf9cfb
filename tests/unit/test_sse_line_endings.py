"""EventSplitter and the SSE spec's three line ends (CRLF, LF, a lone CR), however the
stream is cut into reads (gateway/sse.py)."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sse import EventSplitter, events_of

ENDINGS = (b"\n", b"\r\n", b"\r")
LINE_END = re.compile(rb"\r\n|\r|\n")

# A line holds no CR or LF, and is not empty (an empty line ends the event).
line_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=0, max_size=12
).map(str.encode)
line = st.one_of(
    line_text.map(lambda t: b"data: " + t),
    line_text.map(lambda t: b"data:" + t),
    line_text.map(lambda t: b"event: " + t),
    line_text.map(lambda t: b": " + t),
    st.just(b'data: {"choices":[{"delta":{"content":"a\\r\\nb"}}]}'),
)
events = st.lists(st.lists(line, min_size=1, max_size=3), min_size=1, max_size=6)


@st.composite
def wires(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream of events written with one line-end style or mixed, and the events as
    the splitter gives them (LF line ends)."""
    stream = draw(events)
    style = draw(st.sampled_from([*ENDINGS, None]))  # None: each line end its own
    wire = b""
    for lines in stream:
        for text in [*lines, b""]:  # the empty line ends the event
            ending = style if style is not None else draw(st.sampled_from(ENDINGS))
            if not text and wire.endswith(b"\r") and ending == b"\n":
                ending = b"\r"  # CR then LF is one CRLF, not a line and an empty one
            wire += text + ending
    expected = [b"\n".join(lines) + b"\n\n" for lines in stream]
    return wire, expected


@st.composite
def cuts(draw: st.DrawFn, wire: bytes) -> list[bytes]:
    """`wire` split into reads at any places, an empty read now and then."""
    points = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=len(wire) + 2)))
    edges = [0, *points, len(wire)]
    return [wire[a:b] for a, b in itertools.pairwise(edges)]


def split(reads: list[bytes]) -> tuple[list[bytes], bytes | None]:
    splitter = EventSplitter()
    chunks = [splitter.feed(read) for read in reads]
    return chunks, splitter.tail()


@settings(max_examples=400, deadline=None)
@given(data=st.data(), stream=wires())
def test_any_cut_of_any_line_end_style_gives_the_events_of_the_whole_stream(
    data: st.DataObject, stream: tuple[bytes, list[bytes]]
) -> None:
    wire, expected = stream
    whole, whole_tail = split([wire])
    assert [e for chunk in whole for e in events_of(chunk)] == expected
    assert whole_tail is None
    reads = data.draw(cuts(wire))
    chunks, tail = split(reads)
    assert [e for chunk in chunks for e in events_of(chunk)] == expected
    assert tail is None
    for chunk in filter(None, chunks):  # whole events, LF only, no stray line end first
        assert chunk.endswith(b"\n\n") and b"\r" not in chunk and chunk[:1] != b"\n"


@settings(max_examples=400, deadline=None)
@given(data=st.data(), stream=wires())
def test_an_event_leaves_with_the_read_that_ends_it(
    data: st.DataObject, stream: tuple[bytes, list[bytes]]
) -> None:
    """After each read, what came out is every event the bytes so far have ended, as a
    parser reading the whole prefix sees it (a read ending in CR has ended its line):
    a trailing CR is not held back for the LF that may follow."""
    wire, _ = stream
    splitter = EventSplitter()
    out, seen = b"", b""
    for read in data.draw(cuts(wire)):
        out += splitter.feed(read)
        seen += read
        prefix = LINE_END.sub(b"\n", seen)
        ended = prefix.rfind(b"\n\n")
        assert out == (prefix[: ended + 2] if ended != -1 else b"")


@settings(max_examples=200, deadline=None)
@given(data=st.data(), stream=wires())
def test_a_stream_cut_before_its_last_blank_line_gives_its_last_event_at_the_end(
    data: st.DataObject, stream: tuple[bytes, list[bytes]]
) -> None:
    wire, expected = stream
    unended = wire.removesuffix(b"\n").removesuffix(b"\r")  # the last event's blank line
    chunks, tail = split(data.draw(cuts(unended)))
    assert [e for chunk in chunks for e in events_of(chunk)] + [tail] == expected


def test_a_crlf_split_across_two_reads_is_one_line_end() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\n\r") == b"data: a\n\n"
    assert splitter.feed(b"\ndata: b\r") == b""  # that LF closed the CRLF: no empty line
    assert splitter.feed(b"\n\r\n") == b"data: b\n\n"
    assert splitter.tail() is None


def test_cr_only_events_leave_as_they_end() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b'data: {"a":1}\r\r') == b'data: {"a":1}\n\n'
    assert splitter.feed(b": ping\r\rdata: [DONE]\r") == b": ping\n\n"
    assert splitter.feed(b"\r") == b"data: [DONE]\n\n"
    assert splitter.tail() is None
