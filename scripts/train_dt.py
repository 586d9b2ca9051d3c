"""Train a small Hugging Face ``DecisionTransformerModel`` on an offline dataset (D4RL HDF5 or Minari).

The recipe is the DT paper's gym setup (Chen et al., 2021) shrunk for a CPU: context K = 20 steps, states
standardised with the dataset statistics, returns-to-go divided by 1000, trajectories sampled in proportion
to their length, a random window of K steps left-padded (and masked) when shorter, MSE on the predicted
actions, AdamW with linear warm-up. At every save the model is evaluated with the classic window protocol
on a few held-out environment seeds and the best checkpoint so far is exported (DT returns swing a lot
between nearby training steps). Training runs for a wall-clock budget on one thread and keeps a resumable
training state in ``--work`` (written atomically every ``--save-every`` steps); the selected model, its
``config.json`` and ``dt_meta.json`` (state statistics, K, return scale, target return, provenance) are
exported to ``--out``, which ``namm run --adapter decision --model <out>`` loads.

Usage (the shipped dt-hopper; 14 min on one core)::

    python scripts/train_dt.py --data data/hopper_mix.hdf5 --env Hopper-v5 --out checkpoints/dt_hopper \\
        --work data/dt_hopper_work --minutes 14 --hidden 64 --layers 3 --heads 2 --lr 1e-3 --warmup 300 \\
        --save-every 500
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from namm_suite.adapters.decision import DecisionAdapter, DTMeta
from namm_suite.atomic import write_bytes_atomic
from namm_suite.manager import MemoryManager
from namm_suite.policies import REFERENCE, create_policy
from namm_suite.tasks.decision import dataset_statistics, env_spec, load_d4rl, load_minari


class Batches:
    """Random K-step windows of a list of trajectories, as tensors for ``DecisionTransformerModel``."""

    def __init__(self, trajectories, mean: np.ndarray, std: np.ndarray, k: int, scale: float,
                 max_ep_len: int, seed: int) -> None:
        self.trajs, self.k, self.scale, self.max_ep_len = trajectories, k, scale, max_ep_len
        self.mean, self.std = mean, std
        self.rtgs = [t.returns_to_go() for t in trajectories]
        lengths = np.array([len(t) for t in trajectories], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        k = self.k
        obs_dim, act_dim = self.trajs[0].observations.shape[1], self.trajs[0].actions.shape[1]
        s = np.zeros((batch, k, obs_dim), np.float32)
        a = np.zeros((batch, k, act_dim), np.float32)
        r = np.zeros((batch, k, 1), np.float32)
        ts = np.zeros((batch, k), np.int64)
        mask = np.zeros((batch, k), np.int64)
        for b, i in enumerate(self.rng.choice(len(self.trajs), size=batch, p=self.p)):
            traj = self.trajs[i]
            start = int(self.rng.integers(len(traj)))
            end = min(start + k, len(traj))
            n = end - start
            s[b, k - n:] = (traj.observations[start:end] - self.mean) / self.std
            a[b, k - n:] = traj.actions[start:end]
            r[b, k - n:, 0] = self.rtgs[i][start:end] / self.scale
            ts[b, k - n:] = np.minimum(np.arange(start, end), self.max_ep_len - 1)
            mask[b, k - n:] = 1
        return {"states": torch.from_numpy(s), "actions": torch.from_numpy(a),
                "returns_to_go": torch.from_numpy(r), "timesteps": torch.from_numpy(ts),
                "attention_mask": torch.from_numpy(mask)}


def export(model: DecisionTransformerModel, meta: DTMeta, out: Path) -> None:
    """Write model + meta into ``out`` through a temporary sibling directory renamed into place."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    meta.save(tmp)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def load_data(data: Path, env: str):
    """The environment's spec and the trajectories of ``data`` (Minari folder or D4RL file), checked against
    the environment's observation and action sizes before any training (ValueError / TaskDataError)."""
    spec = env_spec(env)
    trajs = load_minari(data) if data.is_dir() else load_d4rl(data)
    space = gym.make(spec.env_id)
    want = (space.observation_space.shape[0], space.action_space.shape[0])
    got = (trajs[0].observations.shape[1], trajs[0].actions.shape[1])
    if got != want:
        raise ValueError(f"{data}: observations have {got[0]} values and actions {got[1]}, but {spec.env_id} has "
                         f"{want[0]} and {want[1]}: pass the --env the data was recorded in")
    return spec, trajs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="D4RL HDF5 file or local Minari dataset directory")
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="folder for the resumable training state")
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--context", type=int, default=20, help="K, steps per training window")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--target-return", type=float, default=None,
                   help="default return-to-go at evaluation (default: the best return in the data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=3,
                   help="window-protocol episodes per save (env seeds 10000+, disjoint from the tasks' seeds); "
                        "the checkpoint with the best mean return is exported (0: export the last)")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)

    try:
        spec, trajs = load_data(a.data, a.env)
    except (ValueError, OSError) as err:  # bad data or --env (TaskDataError is a ValueError): one line
        print(f"train_dt.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)
    mean, std = dataset_statistics(trajs)
    returns = np.array([t.episode_return for t in trajs])
    config = DecisionTransformerConfig(state_dim=trajs[0].observations.shape[1], act_dim=trajs[0].actions.shape[1],
                                       hidden_size=a.hidden, n_layer=a.layers, n_head=a.heads, n_inner=4 * a.hidden,
                                       max_ep_len=1000, action_tanh=True, n_positions=1024)
    model = DecisionTransformerModel._from_config(config, attn_implementation="eager")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / a.warmup))
    state_file = a.work / "train_state.pt"
    step, seconds, losses, best = 0, 0.0, [], {"mean_return": -np.inf}
    if state_file.is_file():  # resume
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, seconds, losses, best = state["step"], state["seconds"], state["losses"], state["best"]
        print(f"resumed at step {step} ({seconds:.0f} s)", flush=True)
    batches = Batches(trajs, mean, std, a.context, spec.return_scale, config.max_ep_len, a.seed + step)

    def meta() -> DTMeta:
        return DTMeta(env_id=spec.env_id, state_mean=mean.tolist(), state_std=std.tolist(),
                      context_steps=a.context, return_scale=spec.return_scale,
                      target_return=float(a.target_return or returns.max()),
                      provenance={"data": str(a.data), "trajectories": len(trajs),
                                  "transitions": int(sum(len(t) for t in trajs)),
                                  "data_returns": {"mean": float(returns.mean()), "max": float(returns.max())},
                                  "steps": step, "train_seconds": round(seconds, 1), "batch": a.batch,
                                  "lr": a.lr, "final_loss": float(np.mean(losses[-100:])) if losses else None,
                                  "selection": {"rule": "best mean window-protocol return on env seeds 10000+",
                                                **best} if a.eval_episodes else "last step",
                                  "script": "scripts/train_dt.py"})

    def evaluate() -> list[float]:
        """Window-protocol returns of the current model on env seeds 10000, 10001, ..."""
        adapter = DecisionAdapter(model, meta(), protocol="window")
        manager = MemoryManager(create_policy(REFERENCE))
        return [adapter.rollout(spec.env_id, 10_000 + i, 1000, adapter.meta.target_return, manager).output
                for i in range(a.eval_episodes)]

    def save() -> None:
        model.eval()
        returns_now = evaluate() if a.eval_episodes else []
        if not a.eval_episodes or np.mean(returns_now) > best["mean_return"]:
            if returns_now:
                best.update(step=step, mean_return=float(np.mean(returns_now)), returns=returns_now)
            export(model, meta(), a.out)
        model.train()
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "step": step, "seconds": seconds, "losses": losses, "best": best}, buffer)
        write_bytes_atomic(state_file, buffer.getvalue())
        return returns_now

    model.train()
    deadline = time.time() + 60 * a.minutes - seconds
    start = time.time() - seconds
    while time.time() < deadline:
        batch = batches.sample(a.batch)
        out = model(**batch)
        mask = batch["attention_mask"].bool()
        loss = ((out.action_preds - batch["actions"]) ** 2)[mask].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        seconds = time.time() - start
        if step % a.save_every == 0:
            returns_now = save()
            print(json.dumps({"step": step, "seconds": round(seconds), "loss": float(np.mean(losses[-100:])),
                              "eval_returns": [round(r) for r in returns_now], "best_step": best.get("step")}),
                  flush=True)
    save()
    print(f"done: {step} steps in {seconds:.0f} s -> {a.out}")


if __name__ == "__main__":
    main()
