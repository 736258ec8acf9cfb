"""A loop's repeated failure is logged when it starts, once a minute while it lasts and
once when it ends (a database down under a poll twice a second was 13 lines in 6 s)."""

from __future__ import annotations

import itertools
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.repeated import RepeatedProblem
from tests.support.clock import ManualClock


def test_an_outage_is_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    problem = RepeatedProblem(logging.getLogger("t"), "policy poll", every_s=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(240):  # two minutes at two rounds a second
            problem.failed(ConnectionError("database down"))
            clock.now += 0.5
        problem.succeeded()
        problem.succeeded()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "policy poll failed: ConnectionError: database down",
        "policy poll failed (failing for 121 rounds): ConnectionError: database down",
        "policy poll works again after 240 failed rounds",
    ]


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 100)), max_size=200))
def test_each_outage_is_said_at_once_then_at_most_once_a_minute(
    rounds: list[tuple[bool, float]],
) -> None:
    clock = ManualClock()
    warned: list[tuple[int, float]] = []  # (outage number, when)
    outage = 0

    class Sink(logging.Logger):
        def warning(self, *args: object, **kwargs: object) -> None:
            warned.append((outage, clock.now))

    problem = RepeatedProblem(Sink("s"), "x", every_s=60, clock=clock)
    failing = False
    for fails, step in rounds:
        clock.now += step
        if fails:
            outage += 0 if failing else 1
            before = len(warned)
            problem.failed(RuntimeError("e"))
            if not failing:
                assert len(warned) == before + 1  # a new outage is always said
            failing = True
        else:
            problem.succeeded()
            failing = False
    for (a_outage, a_at), (b_outage, b_at) in itertools.pairwise(warned):
        assert b_outage != a_outage or b_at - a_at >= 60
