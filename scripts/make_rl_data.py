"""Generate a medium-replay-like MuJoCo dataset in the D4RL HDF5 layout.

Two stages, both resumable:

1. ``train``: a Stable-Baselines3 PPO controller (4 vectorised envs, observation normalisation) trained
   for a wall-clock budget; a snapshot (policy + normalisation statistics) is written atomically every
   ``--snapshot-every`` environment steps to ``<work>/ppo_<steps>.zip`` / ``.pkl``.
2. ``rollout``: every snapshot (early = weak, last = best) is rolled out with Gaussian action noise
   ``sigma in --noise`` and written to one HDF5 file with D4RL's keys (``observations [N, obs]``,
   ``actions [N, act]``, ``rewards [N]``, ``terminals [N]``, ``timeouts [N]``, ``next_observations``).
   The mix of weak, medium and noisy behaviour mimics D4RL's ``medium-replay`` data.

Usage (one thread; Hopper: ~12 min training + ~2 min rollouts on a 2-core CPU)::

    python scripts/make_rl_data.py train --env Hopper-v5 --work data/ppo_hopper --minutes 12
    python scripts/make_rl_data.py rollout --env Hopper-v5 --work data/ppo_hopper \\
        --out data/hopper_mix.hdf5 --episodes-per-snapshot 12
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from namm_suite.atomic import write_bytes_atomic


def _snapshots(work: Path) -> list[Path]:
    """PPO snapshots in ``work`` sorted by training steps."""
    return sorted(work.glob("ppo_*.zip"), key=lambda p: int(p.stem.split("_")[1]))


def train(env_id: str, work: Path, minutes: float, snapshot_every: int, seed: int) -> None:
    """Train PPO for ``minutes`` of wall time, snapshotting every ``snapshot_every`` env steps."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    work.mkdir(parents=True, exist_ok=True)
    venv = VecNormalize(make_vec_env(env_id, n_envs=4, seed=seed), norm_obs=True, norm_reward=True)
    model = PPO("MlpPolicy", venv, n_steps=512, batch_size=128, n_epochs=5, learning_rate=3e-4,
                gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, seed=seed, verbose=0,
                policy_kwargs={"net_arch": [64, 64], "log_std_init": -0.5})
    deadline = time.time() + 60 * minutes

    class Snapshot(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next = snapshot_every

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += snapshot_every
                stem = work / f"ppo_{self.num_timesteps}"
                tmp = work / f"tmp_{self.num_timesteps}.zip"
                model.save(tmp)
                write_bytes_atomic(stem.with_suffix(".pkl"), pickle.dumps(venv.obs_rms))
                tmp.replace(stem.with_suffix(".zip"))
                rets = [ep["r"] for ep in model.ep_info_buffer]
                print(f"{self.num_timesteps} steps, {time.time() - start:.0f}s, "
                      f"mean return {np.mean(rets) if rets else float('nan'):.1f}", flush=True)
            return time.time() < deadline

    start = time.time()
    model.learn(total_timesteps=10**8, callback=Snapshot())


def rollout(env_id: str, work: Path, out: Path, episodes: int, noise: list[float], seed: int) -> None:
    """Roll out every snapshot with each noise level and write the D4RL-layout HDF5 file ``out``."""
    import h5py
    from stable_baselines3 import PPO

    keys = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
    data: dict[str, list] = {k: [] for k in keys}
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    summary = []
    for snap in _snapshots(work):
        model = PPO.load(snap, device="cpu")
        obs_rms = pickle.loads(snap.with_suffix(".pkl").read_bytes())
        for sigma in noise:
            rets = []
            for ep in range(episodes):
                obs, _ = env.reset(seed=int(rng.integers(2**31)))
                done, ret = False, 0.0
                while not done:
                    norm = np.clip((obs - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -10, 10)
                    act, _ = model.predict(norm, deterministic=True)
                    act = np.clip(act + sigma * rng.standard_normal(act.shape), -1, 1)
                    nxt, rew, term, trunc, _ = env.step(act)
                    for k, v in zip(keys, (obs, act, rew, term, trunc and not term, nxt)):
                        data[k].append(v)
                    obs, ret, done = nxt, ret + float(rew), term or trunc
                rets.append(ret)
            summary.append({"snapshot": snap.stem, "sigma": sigma, "mean_return": float(np.mean(rets))})
            print(json.dumps(summary[-1]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.hdf5")
    with h5py.File(tmp, "w") as f:
        for k in keys:
            f.create_dataset(k, data=np.asarray(data[k], dtype=np.bool_ if k in ("terminals", "timeouts")
                                                else np.float32))
        f.attrs["env_id"] = env_id
        f.attrs["summary"] = json.dumps(summary)
    tmp.replace(out)
    print(f"wrote {out}: {len(data['rewards'])} transitions")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("train", "rollout"))
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--work", type=Path, required=True, help="folder for PPO snapshots")
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--snapshot-every", type=int, default=100_000)
    p.add_argument("--out", type=Path, help="HDF5 file to write (rollout)")
    p.add_argument("--episodes-per-snapshot", type=int, default=12)
    p.add_argument("--noise", default="0,0.2,0.5", help="Gaussian action-noise sigmas")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.stage == "train":
        train(a.env, a.work, a.minutes, a.snapshot_every, a.seed)
    else:
        if a.out is None:
            p.error("rollout needs --out")
        rollout(a.env, a.work, a.out, a.episodes_per_snapshot, [float(s) for s in a.noise.split(",")], a.seed)


if __name__ == "__main__":
    main()
