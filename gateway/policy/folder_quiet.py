"""When a watched policy folder has stopped changing, so an edit is applied whole.

A file written in chunks (an editor saving in two writes, `cat >`, a copy over a
slow mount) reads as valid YAML between them; applied then, its truncated
bundle would be a version of its own (a team gone, its requests refused, until
the rest lands). The watcher waits until the folder has been quiet for
`settle_s`: its newest file changed at least that long ago, or its content read
the same across a whole settle interval (a clock-skewed mtime in the future).
A write-then-rename, or a ConfigMap's symlink swap (files keep old mtimes), is
quiet at once. The rule is pure; `newest_mtime` is the one stat it needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def settle_wait_s(newest_mtime: float | None, now: float, settle_s: float) -> float:
    """Seconds to wait before the folder counts as quiet (0: now); `newest_mtime` and
    `now` are wall-clock seconds. Never more than `settle_s`: after that long with the
    same content, the folder is quiet whatever its mtimes say."""
    if newest_mtime is None:
        return 0.0
    return min(max(settle_s - (now - newest_mtime), 0.0), settle_s)


def newest_mtime(paths: Iterable[Path]) -> float | None:
    """The latest modification time among `paths` (a symlink's target's); None if none.
    Raises OSError for a file that vanished meanwhile."""
    return max((path.stat().st_mtime for path in paths), default=None)
