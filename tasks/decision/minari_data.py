"""Minari datasets from a local directory, read directly from Minari's HDF5 layout.

A Minari dataset directory holds ``data/main_data.hdf5`` (and ``metadata.json``); the file has one group
``episode_<i>`` per episode with ``observations [T+1, obs]`` (the last one is the final observation),
``actions [T, act]``, ``rewards [T]``, ``terminations [T]`` and ``truncations [T]``. Only flat ``Box``
observation and action spaces (the MuJoCo ones) are supported; h5py reads them, the ``minari`` package is
not needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from namm_suite.tasks.base import TaskDataError

from .trajectories import Trajectory, check_array, open_hdf5, read_array

EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def minari_file(path: str | Path) -> Path:
    """The ``main_data.hdf5`` of a Minari dataset directory (or the file itself)."""
    path = Path(path)
    for candidate in (path, path / "data" / "main_data.hdf5", path / "main_data.hdf5"):
        if candidate.is_file():
            return candidate
    raise TaskDataError("no Minari dataset here (expected data/main_data.hdf5)", path=path)


def load_minari(path: str | Path) -> list[Trajectory]:
    """Trajectories of the local Minari dataset at ``path`` (directory or ``main_data.hdf5``), in episode
    order. Raises :class:`TaskDataError` naming file and ``episode_<i>/<key>`` for a missing key, mismatched
    lengths, a non-flat space or a non-finite value."""
    import h5py

    file = minari_file(path)
    trajectories = []
    with open_hdf5(file) as f:
        names = sorted((k for k in f if re.fullmatch(r"episode_\d+", k)), key=lambda k: int(k.split("_")[1]))
        if not names:
            raise TaskDataError("no episode_<i> groups in the file", path=file)
        for name in names:
            group = f[name]
            for key in EPISODE_KEYS:
                if key not in group or not isinstance(group[key], h5py.Dataset):
                    raise TaskDataError("missing key (or not a flat Box-space array)", path=file,
                                        field=f"{name}/{key}")
            n = len(read_array(file, f"{name}/rewards", group["rewards"], np.float32))
            obs = _episode_array(file, group, name, "observations", np.float32, n + 1, 2,
                                 f"one more than the {n} rewards: Minari stores the final observation too")
            act = _episode_array(file, group, name, "actions", np.float32, n, 2)
            rew = _episode_array(file, group, name, "rewards", np.float32, n, 1)
            term = _episode_array(file, group, name, "terminations", bool, n, 1)
            _episode_array(file, group, name, "truncations", bool, n, 1)
            if n == 0:
                raise TaskDataError("episode has no steps", path=file, field=f"{name}/rewards")
            trajectories.append(Trajectory(obs[:-1], act, rew, bool(term[-1])))
    return trajectories


def _episode_array(file: Path, group, name: str, key: str, dtype: type, length: int, ndim: int,
                   rows: str = "one per reward") -> np.ndarray:
    """``group[key]`` read and checked; errors name ``file`` and ``<episode>/<key>``."""
    field = f"{name}/{key}"
    return check_array(file, field, read_array(file, field, group[key], dtype), length, ndim, rows)
