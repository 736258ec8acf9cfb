"""The shape of a stream step, and a chain of them.

A step sees the stream as the upstream sent it, one chunk per upstream read.
A chunk is one or more complete SSE events (`...\\n\\n` each): providers frame
the bytes, steps never see half an event. A step may pass a chunk on, rewrite
it, hold bytes back (release them from a later `feed` or from `finish`), or end
the stream with an OpenAI-shaped error event. Steps do no I/O and read no clock.
The last step may end a stream with CPU-bound work (`Emit.later`, a tokenizer count):
the relay runs it off the event loop and sends what it returns. Any step may hand back
a chunk too costly for the loop (`Emit.offload`): the relay runs it, and the steps
after it, on a thread. A step that learns from the stream (its usage) may also have
`learn(chunk)`: events the upstream sent that the client never gets (after its error
event), for what they report; it returns nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from gateway.errors import GatewayError
from gateway.sse import events_of

__all__ = ["NOTHING", "Chain", "Emit", "Step", "events_of"]


@dataclass(slots=True)
class Emit:
    """What a step lets through now, and whether the stream must end after it. Never
    changed once made; not frozen only because every step makes one per event, and a
    frozen dataclass's `__init__` costs three times as much."""

    data: bytes = b""
    end: GatewayError | None = None  # end the stream with this error event
    # From the last step's finish() only: bytes to send after `data`, made by CPU-bound
    # work the relay runs on a thread (so a multi-megabyte count never stalls the loop).
    later: Callable[[], bytes] | None = None
    # From feed(): the chunk was not handled here, this handles it: the relay runs it on a
    # thread and takes what it returns instead (the output scanner on a dense chunk).
    offload: Callable[[], Emit] | None = None


NOTHING = Emit()


class Step(Protocol):
    def feed(self, chunk: bytes) -> Emit: ...

    def finish(self) -> Emit:
        """The upstream ended normally: release whatever is held back."""
        ...


class Chain:
    """Steps in order: what one releases is what the next is fed."""

    __slots__ = ("_steps",)

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = tuple(steps)

    def feed(self, chunk: bytes) -> Emit:
        return self._through(0, chunk)

    def finish(self) -> Emit:
        released: list[bytes] = []
        later = None
        for index, step in enumerate(self._steps):
            flushed = step.finish()
            out = self._through(index + 1, flushed.data) if flushed.data else NOTHING
            while out.offload is not None:  # what is left at the end: small, run here
                out = out.offload()
            released.append(out.data)
            end = out.end or flushed.end
            if end is not None:
                return Emit(b"".join(released), end)
            if flushed.later is not None:
                # Its bytes would have to pass the later steps, off the loop: not supported.
                assert index == len(self._steps) - 1, "only the last step may defer work"
                later = flushed.later
        return Emit(b"".join(released), later=later)

    def learn(self, chunk: bytes) -> None:
        """Show `chunk` to the steps that learn from what the client does not get."""
        for step in self._steps:
            learn = getattr(step, "learn", None)
            if learn is not None:
                learn(chunk)

    def _through(self, first: int, chunk: bytes, end: GatewayError | None = None) -> Emit:
        for index in range(first, len(self._steps)):
            if not chunk:
                break
            out = self._steps[index].feed(chunk)
            if out.offload is not None:  # the rest of the chain runs where it runs
                return Emit(offload=partial(self._resume, index, out.offload, end))
            chunk = out.data
            # The first step to end the stream decides; later steps still see what it
            # released before the end, but nothing after.
            end = end or out.end
        return Emit(chunk, end) if chunk or end else NOTHING

    def _resume(self, index: int, work: Callable[[], Emit], end: GatewayError | None) -> Emit:
        """Step `index`'s offloaded work, then the steps after it (on the same thread)."""
        out = work()
        rest = self._through(index + 1, out.data, end or out.end)
        while rest.offload is not None:
            rest = rest.offload()
        return rest
