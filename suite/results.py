"""The results store: one JSON line per finished episode, appended atomically and keyed for resuming.

A line is written with a single ``write`` of the whole line under an exclusive ``flock`` and then
fsync'd, so a crash never leaves half a record among finished ones and two processes writing the same
file lose nothing. A torn last line (power loss mid-write) is ignored when reading and cut away before the
next append — it never held a finished record.

Concurrent sweeps: a sweep holds :func:`sweep_lock` on its results file from before it reads the finished
keys until its last row is written, so a second sweep on the same file stops at once with a message naming
the running one (its pid) instead of running every missing episode twice. Other writers (``append_row``
from a script) still never lose or tear a line, and ``namm report`` counts each resume key once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .atomic import write_bytes_atomic


class ResultsError(RuntimeError):
    """A results file cannot be read or written; the message names the file and line."""


def check_writable(path: Path, reserve: int = 16 * 1024) -> None:
    """Fail before any work starts if ``path`` cannot be created or appended to (read-only folder or file
    system, a file where a folder should be, ...) or its disk has less than ``reserve`` bytes free (a probe
    file of that size is written, fsync'd and removed beside it)."""
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
        try:
            with open(probe, "wb") as handle:
                handle.write(bytes(reserve))
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as err:
        raise ResultsError(f"results file {path} cannot be written: {err.strerror or err}") from None


def lock_path(path: Path) -> Path:
    """The lock file a sweep holds beside its results file ``path``."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def sweep_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on results file ``path`` for a whole sweep, or raise :class:`ResultsError`
    naming the process that holds it. The lock file holds that process's pid and is removed on release;
    the lock itself is an ``flock``, so a killed sweep never leaves a stale one behind."""
    target = lock_path(path)
    while True:
        handle = open(target, "a+")  # noqa: SIM115  (kept open for the whole sweep)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ResultsError(f"results file {path} is being written by another sweep (pid {holder}); wait "
                               "for it to finish or give another --out") from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(target).st_ino
        except FileNotFoundError:  # the previous holder removed it between our open and lock
            same = False
        if same:
            break
        handle.close()
    try:
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        target.unlink(missing_ok=True)
        handle.close()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every complete row of ``path`` (missing file: no rows). A torn last line is skipped; a corrupt
    line elsewhere raises :class:`ResultsError` naming the line."""
    return list(_iter_rows(path))


def _iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            yield json.loads(raw)
        except json.JSONDecodeError as err:
            if number == len(lines):  # last line without newline: a write cut short
                return
            raise ResultsError(f"{path}:{number}: corrupt results line ({err.msg})") from None


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` as one JSON line, atomically with respect to crashes and concurrent writers.

    A write or fsync that fails (disk full, I/O error) cuts the file back to its previous end and raises
    :class:`ResultsError`, so no half-written line is left behind.
    """
    data = (json.dumps(row, sort_keys=True, default=str) + "\n").encode()
    with open(path, "a+b", buffering=0) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            _cut_torn_tail(handle)
            end = handle.seek(0, os.SEEK_END)
            try:
                _write_all(handle, data)
                os.fsync(handle.fileno())
            except OSError as err:
                handle.truncate(end)
                raise ResultsError(f"results file {path}: row not written: {err.strerror or err}") from None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_all(handle, data: bytes) -> None:
    """Write every byte of ``data`` with an unbuffered handle (``write`` may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


def _cut_torn_tail(handle) -> None:
    """Truncate an incomplete last line (no trailing newline) left by a crash."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    position = size - 1
    while position > 0:
        step = min(4096, position)
        handle.seek(position - step)
        chunk = handle.read(step)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            handle.truncate(position - step + newline + 1)
            return
        position -= step
    handle.truncate(0)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
