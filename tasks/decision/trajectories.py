"""Offline RL trajectories: the common form the D4RL and Minari loaders return, and their checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from namm_suite.tasks.base import TaskDataError


@dataclass(frozen=True)
class Trajectory:
    """One episode of transitions.

    Attributes:
        observations: float32 ``[T, obs_dim]``, the state before each action.
        actions: float32 ``[T, act_dim]``.
        rewards: float32 ``[T]``.
        terminal: the episode ended in a terminal state (not a time limit or the end of the data).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminal: bool

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())

    def returns_to_go(self) -> np.ndarray:
        """float32 ``[T]``: the undiscounted return from each step to the end."""
        return np.cumsum(self.rewards[::-1])[::-1].astype(np.float32)


@contextmanager
def open_hdf5(path: Path) -> Iterator:
    """``h5py.File(path, "r")``, or :class:`TaskDataError` naming ``path`` when it is not readable HDF5
    (empty, truncated, another format)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise TaskDataError(f"not a readable HDF5 file ({err})", path=path) from None
    with handle:
        yield handle


def read_array(path: str | Path, key: str, dataset: object, dtype: type) -> np.ndarray:
    """``dataset`` read as a numpy array of ``dtype`` with at least one dimension, or
    :class:`TaskDataError` naming ``path`` and ``key`` (a group, strings, a scalar, unreadable bytes)."""
    try:
        array = np.asarray(dataset, dtype)
    except (TypeError, ValueError, OSError) as err:
        raise TaskDataError(f"cannot be read as an array of {np.dtype(dtype).name} ({err})", path=path,
                            field=key) from None
    if array.ndim == 0:
        raise TaskDataError(f"is a scalar ({array!r}), expected one value per transition", path=path, field=key)
    return array


def check_array(path: str | Path, key: str, array: np.ndarray, length: int | None = None,
                ndim: int | None = None, rows: str = "one per reward") -> np.ndarray:
    """Return ``array`` if it has ``length`` rows, ``ndim`` dimensions and only finite values; else raise
    :class:`TaskDataError` naming ``path``, ``key`` and the offending value or index (``rows`` says why
    ``length`` rows are expected)."""
    if ndim is not None and array.ndim != ndim:
        raise TaskDataError(f"expected {ndim} dimensions, got shape {array.shape}", path=path, field=key)
    if length is not None and len(array) != length:
        raise TaskDataError(f"has {len(array)} rows, expected {length} ({rows})", path=path, field=key)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise TaskDataError(f"non-finite value {array[index]} at index {index}", path=path, field=key)
    return array


def dataset_statistics(trajectories: list[Trajectory]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ``[obs_dim]`` of all observations (std floored at 1e-6), as the DT paper
    normalises states."""
    states = np.concatenate([t.observations for t in trajectories])
    return states.mean(0).astype(np.float32), np.maximum(states.std(0), 1e-6).astype(np.float32)
