"""Decision tasks: Gymnasium MuJoCo control with D4RL-normalised returns, and offline-RL data loaders
(D4RL HDF5 files, local Minari datasets)."""

from . import tasks  # noqa: F401  (registration)
from .d4rl import load_d4rl
from .envs import ENVS, EnvSpec, env_spec, normalised_score
from .minari_data import load_minari
from .trajectories import Trajectory, dataset_statistics

__all__ = ["ENVS", "EnvSpec", "Trajectory", "dataset_statistics", "env_spec", "load_d4rl", "load_minari",
           "normalised_score"]
