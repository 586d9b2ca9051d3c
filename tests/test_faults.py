"""Faults: SIGKILL at seeded points (mid-write included), concurrent writers, full disk, read-only folders.

A crash is made deterministic by forking the work and arming ``os.fsync`` in the child: at the n-th fsync
of a chosen file the child optionally tears what was just written (half the last line, the whole last
line, or half the file) and then SIGKILLs itself. ``fsync`` is the moment a writer commits, so the kill
lands inside the real writer (``append_row``, ``write_bytes_atomic``), whatever its implementation.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from namm_suite.evolution import load_state, run_evolution
from namm_suite.evolution.backends import InProcessBackend
from namm_suite.policies import create_policy
from namm_suite.results import ResultsError, append_row, read_rows
from namm_suite.runner import SweepConfig, run_sweep

from .fake_evolution import FakeEvaluator, fake_config
from .fake_sweep import FakeAdapter

CONFIG = {"tasks": ["toy_echo"], "policies": ["full", "h2o", "streaming"], "cache_sizes": [4, 8], "seeds": [0, 1],
          "limit": 3}
ROWS = 30
GENERATIONS = 6
VOLATILE = ("wall_seconds", "seconds", "provenance")  # timings and the git/host stamp


def _tear(fd: int, how: str) -> None:
    """Cut the file behind ``fd``: 'line' half its last line, 'whole' its last line, 'file' half of it."""
    if how == "none":
        return
    with open(f"/proc/self/fd/{fd}", "rb") as handle:
        data = handle.read()
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    keep = {"line": len(data) - (len(data) - start) // 2, "whole": start, "file": len(data) // 2}[how]
    os.ftruncate(fd, keep)


def crash(work: Callable[[], object], target: str, n: int, how: str = "none") -> None:
    """Run ``work`` in a forked child killed by SIGKILL at the ``n``-th fsync of the file named ``target``
    or of its atomic-write temporary (after tearing it as ``how`` says); fail if the child ends otherwise."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 3
        try:
            signal.alarm(60)
            real, count = os.fsync, 0

            def fsync(fd: int) -> None:
                nonlocal count
                name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
                if name == target or (name.startswith(f".{target}.") and name.endswith(".tmp")):
                    count += 1
                    if count == n:
                        _tear(fd, how)
                        os.kill(os.getpid(), signal.SIGKILL)
                real(fd)

            os.fsync = fsync
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with {status}"


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def _sweep(out: Path) -> int:
    return run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter()).written


@pytest.fixture(scope="module")
def straight_sweep(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("straight") / "r.jsonl"
    _sweep(out)
    return _stable(read_rows(out))


# seeded kill points: (row at whose fsync the sweep dies, how that row is torn)
_RNG = random.Random(10)
SWEEP_KILLS = list(zip(_RNG.sample(range(1, ROWS), 5), ("none", "line", "whole", "line", "none"), strict=True))


@pytest.mark.parametrize(("n", "how"), SWEEP_KILLS)
def test_sweep_killed_at_seeded_points_resumes_to_the_uninterrupted_result(tmp_path, straight_sweep, n, how):
    out = tmp_path / "r.jsonl"
    crash(lambda: _sweep(out), out.name, n, how)
    before = read_rows(out)  # a torn last line is not a row
    assert len(before) == (n if how == "none" else n - 1)
    if how == "line":
        assert not out.read_bytes().endswith(b"\n")
    assert _sweep(out) == ROWS - len(before)
    after = read_rows(out)
    assert after[: len(before)] == before  # finished rows untouched
    assert _stable(after) == straight_sweep  # every episode exactly once, same results, same order
    assert out.read_bytes().count(b"\n") == ROWS and _sweep(out) == 0


def _evolve(out: Path, max_generations: int | None = None):
    evaluator = FakeEvaluator()
    return run_evolution(fake_config(), out, evaluator=evaluator, backend=InProcessBackend(evaluator),
                         max_generations=max_generations)


def _evolution_log(out: Path) -> list[dict]:
    return _stable(read_rows(out / "log.jsonl"))


@pytest.fixture(scope="module")
def straight_evolution(tmp_path_factory) -> tuple[list[dict], np.ndarray]:
    out = tmp_path_factory.mktemp("straight_evolution")
    state = _evolve(out)
    return _evolution_log(out), state.es.mean


_RNG = random.Random(11)
_AT = _RNG.sample(range(1, GENERATIONS), 4)
EVOLUTION_KILLS = [
    ("log.jsonl", _AT[0], "none"),  # row written, not yet fsync'd
    ("log.jsonl", _AT[1], "whole"),  # state saved, its log row never written
    ("log.jsonl", _AT[2], "line"),  # log row torn
    ("state.pkl", _AT[3], "file"),  # state file torn mid-write
    ("namm_last.json", _RNG.randint(1, 3), "file"),  # checkpoint sidecar torn mid-write
]


@pytest.mark.parametrize(("target", "n", "how"), EVOLUTION_KILLS)
def test_evolution_killed_at_seeded_points_resumes_exactly(tmp_path, straight_evolution, target, n, how):
    crash(lambda: _evolve(tmp_path), target, n, how)
    finished = read_rows(tmp_path / "log.jsonl")
    assert len(finished) < GENERATIONS, "the kill must land mid-run"
    state = _evolve(tmp_path)
    log, mean = straight_evolution
    assert _evolution_log(tmp_path) == log  # every generation logged exactly once, as uninterrupted
    assert [r["generation"] for r in read_rows(tmp_path / "log.jsonl")] == list(range(1, GENERATIONS + 1))
    assert np.array_equal(state.es.mean, mean)
    assert load_state(tmp_path / "state.pkl").generation == GENERATIONS
    assert create_policy("namm", checkpoint=str(tmp_path / "namm_last")).provenance["generation"] == GENERATIONS


def _append_many(path: Path, writer: int, rows: int, width: int) -> None:
    for i in range(rows):
        append_row(path, {"writer": writer, "i": i, "pad": "x" * width})


WRITERS, ROUNDS = 3, 3


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_processes_appending_at_once_lose_nothing(tmp_path, round_):
    """Large rows take many pages, so a writer that read the tail while another wrote would cut it (without
    the lock this loses rows in most rounds)."""
    out = tmp_path / "shared.jsonl"
    pids = []
    for writer in range(WRITERS):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(60)
                _append_many(out, writer, 50, 400_000)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    rows = read_rows(out)
    assert sorted((r["writer"], r["i"]) for r in rows) == [(w, i) for w in range(WRITERS) for i in range(50)]
    assert out.read_bytes().count(b"\n") == WRITERS * 50


def _enospc(*_args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_fails_before_work_and_never_leaves_half_a_row(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    append_row(out, {"a": 1})
    before = out.read_bytes()
    adapter = FakeAdapter()
    adapter.run = None  # any episode run would fail loudly
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(ResultsError, match=r"r\.jsonl cannot be written: No space left on device"):
        run_sweep(SweepConfig(**CONFIG), out, adapter=adapter)
    with pytest.raises(ResultsError, match=r"r\.jsonl: row not written: No space left on device"):
        append_row(out, {"a": 2, "pad": "y" * 10_000})
    assert out.read_bytes() == before  # the written-but-unsynced row was cut away
    assert not list(tmp_path.glob(".*probe"))


@pytest.fixture
def tmpfs(tmp_path):
    """A mounted 64 KiB tmpfs (needs root; skipped elsewhere), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                               capture_output=True, check=False)
    except OSError:
        pytest.skip("no mount command")
    if mount.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_real_full_disk_mid_sweep_keeps_whole_rows_and_resumes(tmpfs, straight_sweep):
    filler = tmpfs / "filler"
    with pytest.raises(OSError, match="No space left"), open(filler, "wb") as handle:
        while True:
            handle.write(bytes(4096))
            handle.flush()
    out = tmpfs / "r.jsonl"
    with pytest.raises(ResultsError, match="cannot be written: No space left on device"):
        _sweep(out)
    assert not out.exists() or out.stat().st_size == 0
    os.truncate(filler, max(0, filler.stat().st_size - 32 * 1024))  # room for the probe and a few rows
    with pytest.raises(ResultsError, match="row not written: No space left on device"):
        _sweep(out)
    partial = read_rows(out)
    assert 0 < len(partial) < ROWS and out.read_bytes().endswith(b"\n")
    filler.unlink()
    _sweep(out)
    assert _stable(read_rows(out)) == straight_sweep


def test_read_only_file_system_fails_before_work(tmpfs):
    append_row(tmpfs / "r.jsonl", {"a": 1})
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    adapter = FakeAdapter()
    adapter.run = None
    with pytest.raises(ResultsError, match=r"r\.jsonl cannot be written: Read-only file system"):
        run_sweep(SweepConfig(**CONFIG), tmpfs / "r.jsonl", adapter=adapter)
    evaluator = FakeEvaluator()
    evaluator.pool = None  # evolution work would fail loudly
    with pytest.raises(ResultsError, match=r"log\.jsonl cannot be written: Read-only file system"):
        run_evolution(fake_config(), tmpfs, evaluator=evaluator, backend=InProcessBackend(FakeEvaluator()))
