"""Syncing a durable SQLite store's write-ahead log after each commit, outside the write lock.

SQLite's ``synchronous=FULL`` syncs the log inside the commit, while the store's one write lock is
held: every worker then waits for the gateway's disk too. A durable store (the gateway's, whose
commits gate ACKs) commits with ``NORMAL`` instead and calls ``LogSync.sync`` right after: the
commit's frames were written to the log before the lock was released, so once ``sync`` returns
they are on disk, with every frame before them. Whatever waits on the commit (the ACK, the
publish that hands the message to workers) comes after it.

Why that is as safe as ``FULL`` for what is acknowledged:

* a checkpoint that copied the frames into the database file meanwhile synced the log before
  and the database after it (SQLite does so in every mode), and the log is only reused after a
  complete checkpoint;
* the log file is only removed when the last connection to the database closes, after a
  checkpoint that synced the database; with no log there is nothing left to sync;
* SQLite names the log after the database file's real path (symbolic links resolved): so does
  this, and it never opens the database file itself (closing a descriptor of it would drop
  SQLite's POSIX locks on it, process-wide);
* one descriptor is kept open per process and reopened only when the log file was replaced (a
  new inode), so a write-back error the kernel reports once is reported to it;
* a failed sync raises ``StoreSyncError``: the transaction is committed but maybe not on disk,
  and nothing is acknowledged.

A store given as a ``file:`` URI has no path HIE can name: it keeps ``synchronous=FULL``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from hie.errors import StoreSyncError


def log_path(database: Path) -> Path:
    """The write-ahead log SQLite keeps for ``database`` (its real path plus ``-wal``)."""
    real = Path(os.path.realpath(database))
    return real.with_name(real.name + "-wal")


class LogSync:
    """Syncs the write-ahead log of one SQLite database file (module docstring)."""

    def __init__(self, database: Path) -> None:
        self.database = database
        #: The log's path, resolved at the first sync (the database file exists by then).
        self._path: Path | None = None
        self._lock = threading.Lock()
        self._fd: int | None = None
        #: (pid, device, inode) of the file ``_fd`` was opened on.
        self._opened: tuple[int, int, int] | None = None

    def sync(self) -> None:
        """Put every frame written to the log so far on disk.

        Raises:
            StoreSyncError: the log could not be synced (its commits may not survive a power cut).
        """
        path = self._path
        if path is None:
            path = self._path = log_path(self.database)
        with self._lock:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return  # removed at the last connection's close, after a synced checkpoint
            except OSError as exc:
                raise StoreSyncError(f"cannot read {path} to sync it: {exc}") from exc
            key = (os.getpid(), st.st_dev, st.st_ino)
            try:
                if self._fd is None or self._opened != key:
                    if self._fd is not None and self._opened and self._opened[0] == key[0]:
                        os.close(self._fd)  # a log file since replaced (a fork's is left alone)
                    self._fd, self._opened = None, None
                    self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    opened = os.fstat(self._fd)  # the file opened, if replaced since the look
                    self._opened = (key[0], opened.st_dev, opened.st_ino)
                # fdatasync as SQLite itself uses; fsync where there is none (macOS).
                getattr(os, "fdatasync", os.fsync)(self._fd)
            except FileNotFoundError:
                return  # removed between the look and the open: see above
            except OSError as exc:
                raise StoreSyncError(f"syncing {path} to disk failed: {exc}") from exc
