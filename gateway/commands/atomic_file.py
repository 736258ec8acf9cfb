"""Writing an output file all at once: a temporary file beside it, then a rename.

A reader (or a crash) never sees half a file: until `commit` the target is
untouched; on any failure the temporary file is removed. The temporary file is
created when the writer opens, so an unwritable path fails before a long export
runs, not after it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType


class OutputNotWritable(Exception):
    """The output path cannot be written; the message names it and why."""


class AtomicFile:
    """`with AtomicFile(path) as out: out.commit(data)`; nothing is left behind on error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._temp: Path | None = None
        self._fd: int | None = None

    def __enter__(self) -> AtomicFile:
        if self.path.is_dir():
            raise OutputNotWritable(f"cannot write {self.path}: it is a directory")
        folder = self.path.parent
        try:
            self._fd, name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=folder
            )
        except OSError as error:
            raise OutputNotWritable(
                f"cannot write {self.path}: {error.strerror or error} ({folder}/)"
            ) from None
        self._temp = Path(name)
        return self

    def commit(self, data: bytes) -> None:
        """Write `data`, flush it to disk, then put it in place under the target name."""
        assert self._fd is not None and self._temp is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            # mkstemp makes the file 0600; an export is an ordinary file (umask applies).
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._temp, 0o666 & ~umask)
            os.replace(self._temp, self.path)
            self._temp = None
        except OSError as error:
            raise OutputNotWritable(
                f"cannot write {self.path}: {error.strerror or error}"
            ) from None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._temp is not None:  # not committed: leave nothing behind
            self._temp.unlink(missing_ok=True)
            self._temp = None
