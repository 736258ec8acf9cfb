"""A malformed `.policy-version` is read as no marker, and said so once per content.

The folder watcher reads the marker every poll: a garbled one (a merge conflict, a
hand edit) was silently treated as none, so `apply` refused the folder with no hint
why. Now one warning names the file; the next poll of the same content says nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.policy.bundle_text import MARKER_NAME, Marker, read_marker, render_marker


def marker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "is not a policy version marker" in r.getMessage()
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"<<<<<<< HEAD\nversion: 3\n=======\nversion: 4\n>>>>>>> theirs\n",
        b"version: three\nhash: abc\n",
        b"\xff\xfe not utf-8",
    ],
)
def test_a_malformed_marker_is_warned_of_once_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    caplog.set_level(logging.WARNING)
    (tmp_path / MARKER_NAME).write_bytes(content)
    for _poll in range(3):
        assert read_marker(tmp_path) is None
    [warning] = marker_warnings(caplog)
    assert str(tmp_path / MARKER_NAME) in warning


def test_new_malformed_content_is_warned_of_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    marker = tmp_path / MARKER_NAME
    marker.write_text("version: [\n")
    read_marker(tmp_path)
    marker.write_text("version: 0\n")
    read_marker(tmp_path)
    read_marker(tmp_path)
    assert len(marker_warnings(caplog)) == 2


def test_no_marker_and_a_valid_one_say_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert read_marker(tmp_path) is None
    (tmp_path / MARKER_NAME).write_text(render_marker(Marker(2, "abc")))
    assert read_marker(tmp_path) == Marker(2, "abc")
    assert marker_warnings(caplog) == []
