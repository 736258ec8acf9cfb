"""A chain of stream steps (gateway/stream/steps.py): order, hold-back, ending."""

from __future__ import annotations

from gateway.errors import InvalidRequest
from gateway.stream.steps import NOTHING, Chain, Emit

EVENT_A, EVENT_B = b"data: a\n\n", b"data: b\n\n"


class Upper:
    def feed(self, chunk: bytes) -> Emit:
        return Emit(chunk.upper())

    def finish(self) -> Emit:
        return NOTHING


class HoldAll:
    """Holds everything back until the end (a scanner's worst case)."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, chunk: bytes) -> Emit:
        self.held += chunk
        return NOTHING

    def finish(self) -> Emit:
        return Emit(self.held)


class EndAt:
    """Releases what comes before `marker`, then ends the stream."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.error = InvalidRequest("blocked")

    def feed(self, chunk: bytes) -> Emit:
        if self.marker in chunk:
            return Emit(chunk[: chunk.index(self.marker)], self.error)
        return Emit(chunk)

    def finish(self) -> Emit:
        return NOTHING


class Record:
    def __init__(self) -> None:
        self.fed: list[bytes] = []

    def feed(self, chunk: bytes) -> Emit:
        self.fed.append(chunk)
        return Emit(chunk)

    def finish(self) -> Emit:
        return NOTHING


def test_each_step_gets_what_the_one_before_released() -> None:
    record = Record()
    chain = Chain([Upper(), record])
    assert chain.feed(EVENT_A) == Emit(b"DATA: A\n\n")
    assert record.fed == [b"DATA: A\n\n"]


def test_held_bytes_are_released_at_the_end_through_the_later_steps() -> None:
    record = Record()
    chain = Chain([HoldAll(), Upper(), record])
    assert chain.feed(EVENT_A) is NOTHING and chain.feed(EVENT_B) is NOTHING
    assert record.fed == []
    assert chain.finish() == Emit(b"DATA: A\n\nDATA: B\n\n")
    assert record.fed == [b"DATA: A\n\nDATA: B\n\n"]


def test_an_end_releases_what_came_before_it_to_later_steps_and_stops() -> None:
    record = Record()
    ender = EndAt(b"data: b")
    chain = Chain([ender, record])
    out = chain.feed(EVENT_A + EVENT_B)
    assert out.data == EVENT_A and out.end is ender.error
    assert record.fed == [EVENT_A]


def test_an_end_with_nothing_released_still_ends() -> None:
    ender = EndAt(b"data: a")
    out = Chain([ender, Record()]).feed(EVENT_A)
    assert out == Emit(b"", ender.error)


def test_an_end_at_finish_comes_after_the_flushed_bytes() -> None:
    class EndAtFinish(HoldAll):
        def finish(self) -> Emit:
            return Emit(self.held, InvalidRequest("late"))

    chain = Chain([EndAtFinish(), Upper()])
    chain.feed(EVENT_A)
    out = chain.finish()
    assert out.data == b"DATA: A\n\n" and out.end is not None and out.end.message == "late"


class Offload:
    """Hands every chunk back as work for a thread (a dense chunk), upper-cased there."""

    def feed(self, chunk: bytes) -> Emit:
        return Emit(offload=lambda: Emit(chunk.upper()))

    def finish(self) -> Emit:
        return NOTHING


def test_an_offloaded_chunk_runs_its_step_and_the_later_ones_only_when_run() -> None:
    record = Record()
    ender = EndAt(b"data: b")
    chain = Chain([ender, Offload(), record])
    out = chain.feed(EVENT_A + EVENT_B)
    assert out.data == b"" and out.end is None and out.offload is not None
    assert record.fed == []
    ran = out.offload()
    assert ran.data == b"DATA: A\n\n" and ran.end is ender.error and ran.offload is None
    assert record.fed == [b"DATA: A\n\n"]
