"""The ledger writer: every finished request's row reaches the database, or the spool.

On the response path `record` builds the row and puts it on a bounded queue
(a few µs, never awaited). One task drains the queue in batches (`batch_rows`, or
what arrived within `batch_interval_s`) and inserts each batch in one transaction,
idempotently: INSERT … ON CONFLICT (id) DO NOTHING, so a batch written twice (a
replay, a retry after a timeout that did commit) changes nothing. The same
transaction adds the rows it really inserted to the daily rollup (rollup.py).

When the database is unreachable or locked, batches are appended to this process's
spool file (spool.py, fsync per batch) and replayed in order once it answers again;
while anything is spooled, new batches go behind it, so the order holds. At start,
spools left by processes that died are replayed (one process claims each); then a
warning names each other database address's folder that still holds rows (never
replayed here: they may be another database's).

Bounds:
- memory: at most `queue_rows` rows wait in the queue; a row that finds the queue
  full is appended to the spool at once, synchronously (one fsync, on the event
  loop: slow, but only under overload) — never dropped.
- `close()` (the lifespan's end, SIGTERM) stops the task, writes what it held and
  the queue to the database, else to the spool, and tries to replay the spool.
- `kill -9` loses only rows neither committed nor spooled: those recorded within
  the last `batch_interval_s` plus the batch being written (at most
  `write_timeout_s` while the database hangs; while it is known to be down,
  batches go straight to the spool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.context import RequestContext
from gateway.db import create_engine
from gateway.settings import Settings
from gateway.usage.ledger import is_storable, ledger_row
from gateway.usage.rollup import store_rows
from gateway.usage.spool import (
    OwnSpool,
    claimed,
    default_spool_dir,
    encode_any,
    orphans,
    read_chunk,
    reject_lines,
    spool_base,
    spool_folders,
    stranded,
)

log = logging.getLogger("gateway.ledger")

Row = dict[str, Any]

DEFAULT_QUEUE_ROWS = 10_000  # ≈ 20 MB of rows; beyond it rows go straight to the spool
DEFAULT_BATCH_ROWS = 500
DEFAULT_BATCH_INTERVAL_S = 0.2
WRITE_TIMEOUT_S = 5.0  # a batch insert that takes longer counts as an outage
SQLITE_BUSY_S = 1.0  # how long an insert waits for another process's write lock
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0  # between tries while the database is away
EXIT_REPLAY_S = 5.0  # how long `close` spends replaying the spool before leaving it
# Not an outage: a row the database refuses (it would be refused again on replay).
_REFUSED = (IntegrityError, DataError)


class LedgerWriter:
    """Queue → batches → database, with the spool for when the database is away."""

    def __init__(
        self,
        database_url: str,
        spool_dir: Path,
        *,
        queue_rows: int = DEFAULT_QUEUE_ROWS,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_interval_s: float = DEFAULT_BATCH_INTERVAL_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        others_under: Path | None = None,
    ) -> None:
        """`others_under`: the folder of every database's spool folder, whose other
        folders holding rows are named at start (None: not looked at)."""
        self._database_url = database_url
        self._others_under = others_under
        self._queue: asyncio.Queue[Row] = asyncio.Queue(queue_rows)
        self._batch_rows = batch_rows
        self._batch_interval_s = batch_interval_s
        self._write_timeout_s = write_timeout_s
        self._clock = clock
        self.spool = OwnSpool(spool_dir)
        self._engine: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_hand: list[Row] = []  # taken from the queue, not yet stored
        self._is_waiting = False  # the task holds nothing it is writing: safe to cancel
        self._is_closed = False
        self._is_down = False
        self._retry_at = 0.0
        self._retry_s = RETRY_FIRST_S
        self.overflowed = 0  # rows the full queue sent straight to the spool
        # Rows queued and rows stored (in the database or the spool), counted for
        # `caught_up`; `_hurry` cuts a batch's wait short while someone waits for it.
        self._queued = 0
        self._stored = 0
        self._hurry = asyncio.Event()
        self._progress = asyncio.Event()
        self._replays = 0  # tries at replaying this process's spool (`caught_up` counts)

    def backlog(self) -> tuple[int, int]:
        """(rows waiting in memory, bytes in this process's spool): for the metrics."""
        return self._queue.qsize() + len(self._in_hand), self.spool.size

    # --- the response path ----------------------------------------------------

    def record(self, ctx: RequestContext) -> None:
        """Queue the request's row (a recorder: called once per finished request)."""
        row = ledger_row(ctx, ctx.elapsed_s())
        if not self._is_closed:
            try:
                self._queue.put_nowait(row)
                self._queued += 1
                return
            except asyncio.QueueFull:
                if not self.overflowed:
                    log.warning("the ledger queue is full; rows go straight to the spool")
                self.overflowed += 1
        self._spool_now([row])

    async def caught_up(self, timeout_s: float) -> bool:
        """Wait until every row queued before this call is in the database: a budget
        counter rebuilt from the ledger must see the requests this process has finished
        (a batch waits up to the batch interval otherwise, and a rebuild right after
        Redis lost its keys would miss it). Rows in the spool (the database was away)
        are replayed first, now rather than at the outage's next retry: a rebuild after
        an outage missed them (probe p10). False when `timeout_s` ran out first, or the
        replay failed (the database is still away)."""
        target = self._queued
        replays_before: int | None = None  # the replays made when one was asked for
        try:
            async with asyncio.timeout(timeout_s):
                while not self._is_closed:
                    pending = self.spool.is_pending
                    if self._stored >= target and not pending:
                        return True
                    if pending:
                        if replays_before is None:
                            replays_before = self._replays
                            self._retry_at = 0.0  # due now
                        elif self._replays > replays_before:
                            return False  # tried, and the database is still away
                    self._hurry.set()
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            return False
        return self._stored >= target and not self.spool.is_pending

    def _spool_now(self, rows: list[Row]) -> None:
        try:
            self._append(rows)
        except OSError as error:
            # Last resort: the row in the process log, so an operator can still bill it.
            for row in rows:
                log.error(
                    "a ledger row could not be spooled",
                    extra={"fields": {"error": str(error), "ledger_row": row}},
                )

    def _append(self, rows: list[Row]) -> None:
        """Spool `rows` (blocking); a row JSON cannot hold is set aside, not the batch."""
        try:
            self.spool.append(rows)
        except TypeError:  # orjson.JSONEncodeError: nothing was written
            self.spool.append(self._set_aside_unstorable(rows))

    def _set_aside_unstorable(self, rows: list[Row]) -> list[Row]:
        """The rows a database can store; the others go to the rejected file (blocking).

        Only a bug or a value past a column's range (a price no policy may set) makes
        such a row; kept in hand or in the spool it would fail every batch, for every team.
        """
        storable: list[Row] = []
        unstorable: list[bytes] = []
        for row in rows:
            if is_storable(row):
                storable.append(row)
            else:
                unstorable.append(encode_any(row))
        if unstorable:
            reject_lines(self.spool.directory, unstorable, "a value no ledger column holds")
        return storable

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and start draining; spools of dead processes replay first."""
        self._engine = create_engine(self._database_url, sqlite_busy_timeout_s=SQLITE_BUSY_S)
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def close(self) -> None:
        """Write every queued row to the database, else to the spool; then stop."""
        if self._is_closed:
            return
        self._is_closed = True  # from now on `record` appends to the spool itself
        task = self._task
        if task is not None:
            if not self._is_waiting:  # let the batch being written finish
                await asyncio.wait({task}, timeout=self._write_timeout_s + 1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        rows = self._in_hand
        self._in_hand = []
        while not self._queue.empty():
            rows.append(self._queue.get_nowait())
        try:
            await self._flush_at_exit(rows)
        finally:
            self.spool.close()
            if self._engine is not None:
                await self._engine.dispose()

    async def _flush_at_exit(self, rows: list[Row]) -> None:
        if rows and not self.spool.is_pending and not self._is_down:
            try:
                await self._write(rows)
                rows = []
            except Exception as error:
                self._went_down(error)
        if rows:
            await asyncio.to_thread(self._spool_now, rows)
        if self.spool.is_pending and not self._is_down:
            try:
                async with asyncio.timeout(EXIT_REPLAY_S):
                    await self._replay_own()
            except TimeoutError:
                log.warning("ledger spool left for the next start", extra=self._where())

    # --- the drain task -------------------------------------------------------

    async def _run(self) -> None:
        await self._replay_orphans()
        await self._warn_of_stranded_rows()
        while not self._is_closed:
            try:
                await self._next_batch()
                await self._store()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the ledger: the rows stay in hand
                log.exception("the ledger writer failed; retrying")
                await asyncio.sleep(RETRY_MAX_S)

    async def _next_batch(self) -> None:
        """Fill `_in_hand`: wait for a row, then up to a batch within the interval."""
        batch = self._in_hand
        timeout = max(0.0, self._retry_at - self._clock()) if self.spool.is_pending else None
        self._is_waiting = True
        try:
            if not batch:
                row = await self._first_row(timeout)
                if row is None:  # nothing new: time to retry the spool (or hurried to)
                    self._hurry.clear()  # answered: the store step runs next
                    return
                batch.append(row)
            self._take(batch)
            if len(batch) < self._batch_rows and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):  # the interval, or less if hurried
                    async with asyncio.timeout(self._batch_interval_s):
                        await self._hurry.wait()
                self._take(batch)
            self._hurry.clear()
        finally:
            self._is_waiting = False

    async def _first_row(self, wait_s: float | None) -> Row | None:
        """The next row; None when `wait_s` (until the spool's next retry) ran out first,
        or `caught_up` hurried the writer to replay the spool."""
        if wait_s is None:  # nothing spooled: only a row can be due
            return await self._queue.get()
        getting = asyncio.ensure_future(self._queue.get())
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait(
                {getting, hurried}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            hurried.cancel()
            if not getting.done():
                getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        return None

    def _take(self, batch: list[Row]) -> None:
        while len(batch) < self._batch_rows and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _store(self) -> None:
        stored = len(self._in_hand)
        await self._store_in_hand()
        self._stored += stored
        self._progress.set()

    async def _store_in_hand(self) -> None:
        rows = self._in_hand
        if self.spool.is_pending or self._clock() < self._retry_at:
            # Behind what is spooled already, so the replay keeps the order.
            if rows:
                await asyncio.to_thread(self._append, rows)
            self._in_hand = []
            if self._clock() >= self._retry_at:
                await self._replay_own()
            return
        if not rows:
            return
        try:
            await self._write(rows)
        except Exception as error:
            self._went_down(error)
            await asyncio.to_thread(self._append, rows)
        self._in_hand = []

    async def _write(self, rows: list[Row]) -> None:
        """One transaction for the batch; rows the database refuses, or that no column
        can hold (the driver fails before the database sees them), are set aside; the
        latter leave `rows`, so a caller that spools the batch next does not keep them."""
        assert self._engine is not None
        try:
            async with asyncio.timeout(self._write_timeout_s), self._engine.begin() as conn:
                await store_rows(conn, rows)
        except _REFUSED:
            await self._write_one_by_one(rows)
        except Exception:
            storable = await asyncio.to_thread(self._set_aside_unstorable, rows)
            if len(storable) == len(rows):
                raise  # the rows are fine: the database is away
            rows[:] = storable
            if rows:
                await self._write(rows)

    async def _write_one_by_one(self, rows: list[Row]) -> None:
        assert self._engine is not None
        refused: list[bytes] = []
        for row in rows:
            try:
                async with asyncio.timeout(self._write_timeout_s), self._engine.begin() as conn:
                    await store_rows(conn, [row])
            except _REFUSED:
                refused.append(encode_any(row))
        if refused:
            await asyncio.to_thread(
                reject_lines, self.spool.directory, refused, "refused by the database"
            )

    async def _replay_own(self) -> None:
        """This process's spool into the database, in order; emptied once all is in."""
        self._replays += 1
        try:
            while True:
                chunk = await asyncio.to_thread(self.spool.read, self._batch_rows)
                if chunk.end == self.spool.replayed_to:
                    break
                if chunk.rows:
                    await self._write(chunk.rows)
                self.spool.replayed_to = chunk.end
            self.spool.empty_if_replayed()
        except Exception as error:
            self._went_down(error)
            return
        await self._came_back()

    async def _replay_orphans(self) -> None:
        """Spools of processes that are gone: claim each (one process wins), replay, delete."""
        directory = self.spool.directory
        for path in orphans(directory, self.spool.path):
            with claimed(path) as fd:
                if fd is None:
                    continue
                offset, rows = 0, 0
                try:
                    while True:
                        chunk = await asyncio.to_thread(
                            read_chunk, fd, offset, self._batch_rows, directory
                        )
                        if chunk.end == offset:
                            break
                        if chunk.rows:
                            await self._write(chunk.rows)
                        offset, rows = chunk.end, rows + len(chunk.rows)
                except Exception as error:
                    self._went_down(error)
                    return  # the file stays; replayed again (idempotently) later
                tail = _tail(fd, offset)
                if tail:  # a line cut short by the crash
                    reject_lines(directory, [tail], "a spool line cut short")
                path.unlink(missing_ok=True)
            log.info(
                "replayed a ledger spool left by an earlier process",
                extra={"fields": {"path": str(path), "rows": rows}},
            )

    async def _warn_of_stranded_rows(self) -> None:
        """Name each other folder still holding rows: the same database reached at a new
        address (failover, a DNS name for an IP, PgBouncer) would leave them there unseen."""
        if self._others_under is None:
            return
        try:
            folders = await asyncio.to_thread(spool_folders, self._others_under)
        except Exception:  # only a warning is at stake: the ledger goes on
            log.exception("the other ledger spool folders could not be looked at")
            return
        for folder in stranded(self.spool.directory, folders):
            log.warning(
                "another database address's ledger spool folder holds rows this process "
                "does not replay; if they are this database's, move its ledger-*.jsonl files "
                "(not rejected.jsonl) into this database's spool folder: the next start "
                "replays them, and a row already in the ledger is not written twice; if "
                "another database's, start a gateway on that database",
                extra={
                    "fields": {
                        "stranded_folder": str(folder.path),
                        "files": folder.files,
                        "rows": folder.rows,
                        "spool_folder": str(self.spool.directory),
                    }
                },
            )

    # --- outage bookkeeping ----------------------------------------------------

    def _went_down(self, error: BaseException) -> None:
        if not self._is_down:
            self._is_down = True
            log.warning(
                "the ledger database is unavailable; rows go to the spool",
                extra={"fields": {**self._where()["fields"], "error": repr(error)[:500]}},
            )
        self._retry_at = self._clock() + self._retry_s
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)

    async def _came_back(self) -> None:
        self._retry_s = RETRY_FIRST_S
        if self._is_down:
            self._is_down = False
            log.info("the ledger database is back; the spool is replayed", extra=self._where())
            await self._replay_orphans()

    def _where(self) -> dict[str, Any]:
        return {"fields": {"spool": str(self.spool.path)}}


def _tail(fd: int, offset: int) -> bytes:
    return os.pread(fd, 1 << 20, offset)


def ledger_writer(settings: Settings) -> LedgerWriter:
    """The writer `build_services` runs, from GATEWAY_DATABASE_URL and the ledger settings."""
    return LedgerWriter(
        settings.database_url,
        default_spool_dir(settings.database_url, settings.ledger_spool_dir),
        queue_rows=settings.ledger_queue_rows,
        others_under=spool_base(settings.ledger_spool_dir),
    )
