"""The ledger's spool: rows the database could not take yet, on disk, one JSON line each.

Each process appends to its own file, `ledger-<pid>-<random>.jsonl`, so two replicas
or workers sharing the directory never interleave. A file is held under an
exclusive `flock` by its writer while the process lives: a file nobody holds is an
orphan (its process died), and whoever takes its lock first replays it, then
deletes it. The kernel drops the lock when a process dies, even under `kill -9`,
so a crash can never leave a file claimed. Replaying twice is harmless (inserts
are idempotent by id); replaying in file order keeps the original order.

Blocking file I/O: call it in a thread, except the rare overflow append (`append`
is whole lines with one `write` on an O_APPEND descriptor, then `fsync`).
Lines that do not parse as a ledger row (a write cut short by a power loss) go to
`rejected.jsonl` next to the spool, so they never block the rows after them.

Each database has its own folder under the spool base, named by its address, and a
process replays only its own folder's files (another folder may hold another
database's rows). The same database reached at a new address (failover, a DNS name
for an IP, PgBouncer) gets a new folder: `stranded` names the others that still hold
rows, so the start can say so. Moving their `ledger-*.jsonl` files into the current
folder is safe: a rename keeps the inode, so a live writer keeps its flock (and the
file is skipped until it is gone), and rows insert once by id.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from gateway.usage.ledger import row_from_spool

log = logging.getLogger("gateway.ledger")

SPOOL_GLOB = "ledger-*.jsonl"
REJECTED_FILE = "rejected.jsonl"
READ_CHUNK_BYTES = 1 << 20  # rows are well under 4 KiB; a chunk holds hundreds


def default_spool_dir(database_url: str, configured: str | None) -> Path:
    """Where this database's spool lives (absolute): GATEWAY_LEDGER_SPOOL_DIR if set,
    else next to a SQLite file (`gateway.db.ledger-spool/`), else `./ledger-spool/`
    with one folder per PostgreSQL database, so rows never replay into another one."""
    url = make_url(database_url)
    is_file = url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:"
    if is_file and not configured:
        database = Path(url.database or "")
        return (database.parent / f"{database.name}.ledger-spool").resolve()
    name = url.database or "memory"
    where = f"{url.host or ''}-{url.port or ''}-{name}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in where).strip("-.")
    return (spool_base(configured) / (safe or "default")).resolve()


def spool_base(configured: str | None) -> Path:
    """The folder holding one spool folder per database address (absolute):
    GATEWAY_LEDGER_SPOOL_DIR, else `./ledger-spool/` (a SQLite file's own spool, beside
    the file when the setting is unset, is not in it)."""
    return Path(configured or "ledger-spool").resolve()


@dataclass(frozen=True, slots=True)
class SpoolFolder:
    """What a spool folder holds: its `ledger-*.jsonl` files and their whole lines."""

    path: Path
    files: int
    rows: int


def stranded(current: Path, folders: Iterable[SpoolFolder]) -> list[SpoolFolder]:
    """The folders, other than this database's `current` one, that still hold rows: no
    process of this database replays them (by path)."""
    return sorted(
        (folder for folder in folders if folder.path != current and folder.rows > 0),
        key=lambda folder: folder.path,
    )


def spool_folders(base: Path) -> list[SpoolFolder]:
    """Each folder under `base` with what its spool files hold (blocking: reads them all)."""
    try:
        found = [path.resolve() for path in base.iterdir() if path.is_dir()]
    except OSError:  # no base yet, or not readable: nothing to tell
        return []
    folders = []
    for path in found:
        try:
            files = list(path.glob(SPOOL_GLOB))
            folders.append(SpoolFolder(path, len(files), sum(map(_count_lines, files))))
        except OSError:
            continue
    return folders


def _count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as file:  # a plain read: no flock taken, no replay disturbed
        while chunk := file.read(READ_CHUNK_BYTES):
            lines += chunk.count(b"\n")
    return lines


def encode_rows(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def encode_any(row: dict[str, Any]) -> bytes:
    """A row as one JSON line for the rejected file, even one orjson refuses (an integer
    past 64 bits): the standard library writes any int, and anything else as its repr."""
    try:
        return orjson.dumps(row)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(row, default=repr).encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    """Make a new file's name durable, not only its bytes."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class Chunk:
    rows: list[dict[str, Any]]
    end: int  # the file offset just past the last line read


def read_chunk(fd: int, offset: int, max_rows: int, directory: Path) -> Chunk:
    """Up to `max_rows` whole lines from `offset`; damaged lines set aside as rejected."""
    data = os.pread(fd, READ_CHUNK_BYTES, offset)
    rows: list[dict[str, Any]] = []
    rejected: list[bytes] = []
    position = 0
    while len(rows) < max_rows:
        newline = data.find(b"\n", position)
        if newline < 0:
            break  # a partial line: a write still under way, or one cut by a crash
        line = data[position:newline]
        position = newline + 1
        try:
            row = row_from_spool(orjson.loads(line))
        except orjson.JSONDecodeError:
            row = None
        if row is None:
            rejected.append(line)
        else:
            rows.append(row)
    if rejected:
        reject_lines(directory, rejected, "a damaged spool line")
    return Chunk(rows, offset + position)


def reject_lines(directory: Path, lines: list[bytes], why: str) -> None:
    """Keep what could not be inserted where an operator finds it; never drop it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / REJECTED_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        _write_all(fd, b"".join(line + b"\n" for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)
    log.error(
        "ledger rows set aside in %s: %s",
        directory / REJECTED_FILE,
        why,
        extra={"fields": {"rows": len(lines)}},
    )


class OwnSpool:
    """This process's spool file: appended while the database is away, replayed when back.

    `replayed_to` is how far its rows are in the database; the file is emptied
    (truncated) only when nothing was appended after that point.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"ledger-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        self._fd: int | None = None
        self.replayed_to = 0
        self.size = 0

    @property
    def is_pending(self) -> bool:
        return self.size > self.replayed_to

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add whole rows and fsync them: once this returns they survive a crash."""
        data = encode_rows(rows)
        fd = self._open()
        _write_all(fd, data)
        os.fsync(fd)
        self.size = os.fstat(fd).st_size

    def read(self, max_rows: int) -> Chunk:
        fd = self._open()
        return read_chunk(fd, self.replayed_to, max_rows, self.directory)

    def empty_if_replayed(self) -> None:
        """Truncate once every appended row is in the database (no I/O wait: a syscall)."""
        if self._fd is None:
            return
        self.size = os.fstat(self._fd).st_size
        if self.size == self.replayed_to:
            os.ftruncate(self._fd, 0)
            self.size = self.replayed_to = 0

    def close(self) -> None:
        """Release the file; an empty one is removed, a pending one stays for the next start."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if os.fstat(fd).st_size == 0:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # drops the flock: the file is now an orphan, replayed at next start

    def _open(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and ours: never contended
            _fsync_dir(self.directory)
            self._fd = fd
            self.size = os.fstat(fd).st_size
        return self._fd


@contextmanager
def claimed(path: Path) -> Iterator[int | None]:
    """The file's descriptor if this process may replay it (its writer is gone), else None.

    Several processes starting at once each try `flock(LOCK_NB)`: one wins, the
    others skip the file. A file the winner already deleted (no links left) is skipped.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None  # its process is alive and replays it itself
            return
        yield fd if os.fstat(fd).st_nlink > 0 else None
    finally:
        os.close(fd)


def orphans(directory: Path, own: Path) -> list[Path]:
    """Spool files in `directory` other than this process's own, oldest first."""
    try:
        found = [path for path in directory.glob(SPOOL_GLOB) if path != own]
    except OSError:
        return []
    return sorted(found, key=_mtime)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
