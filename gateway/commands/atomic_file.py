"""Writing an output file as a shell's `>` would, but all at once where it can.

`-o PATH` writes to the file PATH names: a symlink is followed; a regular file
(or none yet) is replaced atomically, through a temporary file beside it and a
rename, so a reader (or a crash) never sees half a file and on any failure the
temporary file is removed; anything else (a FIFO, a device such as /dev/null)
is written into with a plain open, since replacing it would destroy it. The
target is opened when the writer opens, so an unwritable path fails before a
long export runs, not after it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from types import TracebackType


class OutputNotWritable(Exception):
    """The output path cannot be written; the message names it and why."""


class OutputPathInvalid(Exception):
    """`-o` names no file a command could write (empty, or a folder that is not there):
    a usage error, exit 2; the message names the value and why."""


def output_path(written: str, file_name: str | None = None) -> Path:
    """The file `-o WRITTEN` names: WRITTEN itself, or `file_name` inside it when WRITTEN
    is an existing folder and the command has a usual file name (`policy schema` writes
    policy.schema.json). A trailing slash says a folder was meant: one that is not there
    is refused, never written as a file of that name (as `cp x missing/` refuses)."""
    if not written:
        raise OutputPathInvalid("-o needs a path ('-' is stdout)")
    path = Path(written)
    if file_name is not None and path.is_dir():
        return path / file_name
    if written.endswith(("/", os.sep)) and not path.is_dir():
        problem = f"{written} is not a folder" if path.exists() else f"no folder {written}"
        raise OutputPathInvalid(f"-o {written}: {problem}")
    return path


class AtomicFile:
    """`with AtomicFile(path) as out: out.commit(data)`; nothing is left behind on error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._target = path  # the file written: `path` with its symlinks followed
        self._temp: Path | None = None  # None: written through, not replaced
        self._mode = 0o666
        self._fd: int | None = None

    def __enter__(self) -> AtomicFile:
        self._target = Path(os.path.realpath(self.path))  # a symlink names its target
        try:
            mode: int | None = self._target.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as error:
            raise self._unwritable(error) from None
        if mode is not None and stat.S_ISDIR(mode):
            raise OutputNotWritable(f"cannot write {self.path}: it is a directory")
        if mode is not None and not stat.S_ISREG(mode):
            self._open_through()
        else:
            self._open_temporary(mode)
        return self

    def _open_through(self) -> None:
        """A FIFO or device: write into it (a FIFO's open waits for its reader, as `>`)."""
        try:
            self._fd = os.open(self._target, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as error:
            raise self._unwritable(error) from None

    def _open_temporary(self, mode: int | None) -> None:
        """A regular file or none: a temporary file beside it, renamed over it on commit."""
        folder = self._target.parent
        try:
            self._fd, name = tempfile.mkstemp(
                prefix=f".{self._target.name}.", suffix=".tmp", dir=folder
            )
        except OSError as error:
            raise OutputNotWritable(
                f"cannot write {self.path}: {error.strerror or error} ({folder}/)"
            ) from None
        self._temp = Path(name)
        if mode is not None:  # the file replaced keeps its permissions, as with `>`
            self._mode = stat.S_IMODE(mode) & 0o777  # never carry set-id bits over
        else:  # mkstemp makes the file 0600; an export is an ordinary file (umask applies)
            umask = os.umask(0)
            os.umask(umask)
            self._mode = 0o666 & ~umask

    def commit(self, data: bytes) -> None:
        """Write `data`; a replaced file is flushed to disk, then put in place."""
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if self._temp is not None:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            if self._temp is not None:
                os.chmod(self._temp, self._mode)
                os.replace(self._temp, self._target)
                self._temp = None
        except OSError as error:
            raise self._unwritable(error) from None

    def _unwritable(self, error: OSError) -> OutputNotWritable:
        return OutputNotWritable(f"cannot write {self.path}: {error.strerror or error}")

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
