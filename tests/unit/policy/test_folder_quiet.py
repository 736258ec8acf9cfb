"""When a watched policy folder counts as quiet (its edit complete)."""

from __future__ import annotations

import pytest

from gateway.policy.folder_quiet import settle_wait_s


@pytest.mark.parametrize(
    ("mtime", "now", "expected"),
    [
        (None, 100.0, 0.0),  # no file: nothing to wait for
        (50.0, 100.0, 0.0),  # changed long ago (a ConfigMap swap keeps old mtimes)
        (99.0, 100.0, 0.0),  # exactly the settle interval ago
        (99.7, 100.0, 0.7),  # just written: wait out the rest
        (100.0, 100.0, 1.0),
        (130.0, 100.0, 1.0),  # an mtime in the future waits one interval, never longer
    ],
)
def test_settle_wait(mtime: float | None, now: float, expected: float) -> None:
    """A folder is quiet once its newest file is `settle_s` old, and waits at most that."""
    assert settle_wait_s(mtime, now, 1.0) == pytest.approx(expected)


def test_no_settle_interval_never_waits() -> None:
    """settle_s=0 (tests) applies at once."""
    assert settle_wait_s(100.0, 100.0, 0.0) == 0.0
