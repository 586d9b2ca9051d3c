"""D4RL HDF5 files (Fu et al., 2020): flat transition arrays split into trajectories.

A D4RL file holds ``observations [N, obs]``, ``actions [N, act]``, ``rewards [N]``, ``terminals [N]`` and
``timeouts [N]`` (``next_observations [N, obs]`` is optional and not needed). An episode ends after a
transition whose ``terminals`` or ``timeouts`` flag is set; trailing transitions after the last flag form a
final, unterminated trajectory, as in D4RL's own ``sequence_dataset``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from namm_suite.tasks.base import TaskDataError

from .trajectories import Trajectory, check_array, open_hdf5, read_array

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def load_d4rl(path: str | Path) -> list[Trajectory]:
    """Trajectories of the D4RL HDF5 file ``path``.

    Raises :class:`TaskDataError` naming the file and key for a missing file or key, mismatched array
    lengths, wrong dimensions or a non-finite observation, action or reward.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskDataError("D4RL HDF5 file not found", path=path)
    with open_hdf5(path) as f:
        for key in REQUIRED_KEYS:
            if key not in f:
                raise TaskDataError(f"missing key; a D4RL file needs {', '.join(REQUIRED_KEYS)}", path=path,
                                    field=key)
        rew = check_array(path, "rewards", read_array(path, "rewards", f["rewards"], np.float32).reshape(-1))
        n = len(rew)
        obs = check_array(path, "observations", read_array(path, "observations", f["observations"], np.float32),
                          n, 2)
        act = check_array(path, "actions", read_array(path, "actions", f["actions"], np.float32), n, 2)
        terminals = check_array(path, "terminals", read_array(path, "terminals", f["terminals"], bool).reshape(-1), n)
        timeouts = check_array(path, "timeouts", read_array(path, "timeouts", f["timeouts"], bool).reshape(-1), n)
    if n == 0:
        raise TaskDataError("the file holds no transitions", path=path, field="rewards")
    ends = np.flatnonzero(terminals | timeouts).tolist()
    if not ends or ends[-1] != n - 1:
        ends.append(n - 1)
    trajectories, start = [], 0
    for end in ends:
        trajectories.append(Trajectory(obs[start:end + 1], act[start:end + 1], rew[start:end + 1],
                                       bool(terminals[end])))
        start = end + 1
    return trajectories
