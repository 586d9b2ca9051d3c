"""Decision-Transformer adapter: a Hugging Face ``DecisionTransformerModel`` acting in Gymnasium MuJoCo.

Two protocols, both with exactly the Hugging Face model's maths (same embeddings, ``embed_ln``, GPT-2
encoder with all-zero position ids, ``predict_action`` read from the state token):

- ``cache`` (adapter ``decision``): the episode's tokens ``R_0, s_0, a_0, R_1, s_1, a_1, ...`` enter the KV
  cache incrementally — at step ``t`` one pass appends ``a_{t-1}, R_t, s_t`` (just ``R_0, s_0`` at t = 0) —
  and the memory policy prunes the cache on the manager's schedule. Passes are split where the schedule
  says (tokens seen a multiple of ``update_every``) so every update sees exactly ``update_every`` new
  queries. With the ``full`` policy this equals re-encoding the whole history at every step.
- ``window`` (adapter ``decision-window``): the classic DT evaluation (Chen et al., 2021; HF's
  ``get_action``) re-encodes the last ``K`` steps at every step with no cache. It is the reference protocol;
  it takes no memory policy (run it with ``full``). Its nearest cache analogue is ``streaming`` with a
  ``3K``-token budget, which is not identical: cached keys of higher layers carry older context.

Time steps are embedded separately (``embed_timestep``) and the encoder's position ids are all zero, so
evicting tokens never shifts anything the model sees about time.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from namm_suite.attention import ATTN_IMPLEMENTATION
from namm_suite.manager import MemoryManager, MemoryStats
from namm_suite.policies import POLICIES, REFERENCE
from namm_suite.registry import Registry
from namm_suite.shipped import CHECKPOINTS
from namm_suite.tasks.base import Episode

from .base import ADAPTERS, Prediction
from .models import resolve_model

META_FILE = "dt_meta.json"
# embedded names of the project's own trained DTs (scripts/train_dt.py)
SHIPPED_DTS: Registry[Path] = Registry("Decision Transformer")
SHIPPED_DTS.register("dt-hopper")(CHECKPOINTS / "dt_hopper")
SHIPPED_DTS.register("dt-walker2d")(CHECKPOINTS / "dt_walker2d")
PROTOCOLS = ("cache", "window")


@dataclass(frozen=True)
class DTMeta:
    """What a DT checkpoint needs besides its weights (``dt_meta.json`` beside ``config.json``).

    Attributes:
        env_id: Gymnasium id the model was trained for (``"Hopper-v5"``).
        state_mean / state_std: ``[state_dim]`` statistics of the training states (inputs are standardised).
        context_steps: K, the training context in steps (the classic evaluation window).
        return_scale: returns-to-go are divided by it before ``embed_return``.
        target_return: default return-to-go to condition on (undiscounted, unscaled).
        provenance: how the checkpoint was made (data, training steps, wall time, ...).
    """

    env_id: str
    state_mean: list[float]
    state_std: list[float]
    context_steps: int
    return_scale: float
    target_return: float
    provenance: dict

    @classmethod
    def load(cls, folder: Path) -> DTMeta:
        path = folder / META_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a DT checkpoint needs {META_FILE} beside config.json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict) or set(data) != set(fields):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: expected the fields {', '.join(fields)}, got {got}")
        if len(data["state_mean"]) != len(data["state_std"]) or min(data["state_std"], default=0) <= 0:
            raise ValueError(f"{path}: state_mean and state_std must be lists of one size, std > 0")
        return cls(**data)

    def save(self, folder: Path) -> None:
        (folder / META_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")


class ActionReadout(torch.nn.Module):
    """A DT's encoder and action head as the causal model :meth:`MemoryManager.forward` drives: its ``logits``
    are the action predictions ``[B, logits_to_keep, act_dim]`` of the last positions, as a causal LM's are
    its head's scores (only those read from a state token are actions the DT takes)."""

    def __init__(self, model: DecisionTransformerModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds: torch.Tensor, logits_to_keep: int = 0, **kwargs) -> SimpleNamespace:
        hidden = self.model.encoder(inputs_embeds=inputs_embeds, **kwargs).last_hidden_state
        return SimpleNamespace(logits=self.model.predict_action(hidden[:, -logits_to_keep:]))


class DecisionAdapter:
    """Runs a Decision Transformer episode in a Gymnasium environment under a :class:`MemoryManager`."""

    modality = "decision"
    tokenizer = None  # states and actions, no text

    def __init__(self, model: DecisionTransformerModel, meta: DTMeta, protocol: str = "cache",
                 threads: int = 1) -> None:
        """``threads``: torch intra-op threads during a rollout (restored afterwards). A DT step is a few
        tiny matmuls, so one thread is fastest; on this project's loaded 2-core machine two threads made a
        step ~100× slower (350 ms instead of 2–3 ms)."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if protocol == "cache" and model.config._attn_implementation != ATTN_IMPLEMENTATION:
            raise ValueError(f"the model must be loaded with attn_implementation={ATTN_IMPLEMENTATION!r}, "
                             f"got {model.config._attn_implementation!r}")
        self.model = model.eval()
        self.readout = ActionReadout(self.model)
        self.meta = meta
        self.protocol = protocol
        self.threads = threads
        self.mean = torch.tensor(meta.state_mean, dtype=torch.float32)
        self.std = torch.tensor(meta.state_std, dtype=torch.float32)

    @classmethod
    def from_pretrained(cls, name_or_path: str, protocol: str = "cache", device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> DecisionAdapter:
        """Load a DT checkpoint; it runs on the CPU in float32 (a few tiny matmuls per simulator step)."""
        if device != "cpu" or dtype != torch.float32:
            raise ValueError(f"the decision adapter runs on the CPU in fp32, got device {device!r}, dtype "
                             f"{str(dtype).removeprefix('torch.')}: pass --device cpu --dtype fp32")
        path = resolve_model(name_or_path, SHIPPED_DTS)
        # a DT reads no tokens: GPT-2's bos/eos ids (50256, in configs saved by transformers) only make
        # transformers warn that they lie outside the vocabulary of 1 on every load
        try:
            fields = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path / 'config.json'}: not valid JSON ({err})") from None
        config = DecisionTransformerConfig.from_dict({**fields, "bos_token_id": None, "eos_token_id": None})
        model = DecisionTransformerModel.from_pretrained(path, config=config, attn_implementation=ATTN_IMPLEMENTATION,
                                                         local_files_only=True)
        return cls(model, DTMeta.load(path), protocol)

    # ---- token embeddings (DecisionTransformerModel.forward, one step at a time) ---------------------
    @torch.no_grad()
    def embed_step(self, rtg: float, state: np.ndarray, step: int, prev_action: np.ndarray | None
                   ) -> torch.Tensor:
        """Embeddings ``[1, n, E]`` of ``a_{t-1}`` (when given), ``R_t``, ``s_t`` after ``embed_ln``;
        ``rtg`` unscaled, ``state`` raw ``[state_dim]``, ``step`` = t."""
        m = self.model
        t = torch.tensor([min(step, m.config.max_ep_len - 1)])
        s = (torch.as_tensor(state, dtype=torch.float32) - self.mean) / self.std
        tokens = [m.embed_return(torch.tensor([[rtg / self.meta.return_scale]])) + m.embed_timestep(t),
                  m.embed_state(s[None]) + m.embed_timestep(t)]
        if prev_action is not None:
            a = torch.as_tensor(prev_action, dtype=torch.float32)[None]
            tokens.insert(0, m.embed_action(a) + m.embed_timestep((t - 1).clamp(min=0)))
        return m.embed_ln(torch.cat(tokens)[None])

    @torch.no_grad()
    def act_cached(self, manager: MemoryManager, embeds: torch.Tensor) -> torch.Tensor:
        """Append ``embeds [1, n, E]`` to the manager's cache in schedule-aligned passes
        (:meth:`MemoryManager.forward`); return the action prediction ``[act_dim]`` read from the last token
        (the state token)."""
        positions = torch.zeros(embeds.shape[:2], dtype=torch.long)
        return manager.forward(self.readout, inputs_embeds=embeds, position_ids=positions)[0]

    @torch.no_grad()
    def act_window(self, history: dict[str, list], context_steps: int) -> torch.Tensor:
        """The classic protocol: Hugging Face's forward over the last ``context_steps`` steps of
        ``history`` (lists of rtg, raw states, actions, timesteps; the newest action is a zero
        placeholder that the causal mask hides from the state token)."""
        k = context_steps
        states = (torch.tensor(np.asarray(history["states"][-k:]), dtype=torch.float32) - self.mean) / self.std
        out = self.model(
            states=states[None],
            actions=torch.tensor(np.asarray(history["actions"][-k:]), dtype=torch.float32)[None],
            returns_to_go=torch.tensor(history["rtg"][-k:], dtype=torch.float32)[None, :, None]
            / self.meta.return_scale,
            timesteps=torch.tensor(history["timesteps"][-k:]).clamp(max=self.model.config.max_ep_len - 1)[None],
        )
        return out.action_preds[0, -1]

    # ---- one episode ---------------------------------------------------------------------------------
    def run(self, episode: Episode, manager: MemoryManager) -> Prediction:
        """Roll out ``episode`` (inputs ``env_id``, ``env_seed``, ``max_steps``, optional
        ``target_return``); ``output`` is the undiscounted episode return."""
        inputs = episode.inputs
        self.check(episode, manager.policy.name)
        target = inputs.get("target_return")
        return self.rollout(inputs["env_id"], inputs["env_seed"], inputs["max_steps"],
                            self.meta.target_return if target is None else float(target), manager)

    def check(self, episode: Episode, policy: str) -> None:
        """Refuse, before any rollout, what this DT cannot run: another environment, a state size other
        than the environment's, or a memory policy under the window protocol (the runner calls it once per
        task and cell before the sweep starts)."""
        env_id = episode.inputs["env_id"]
        if env_id != self.meta.env_id:
            raise ValueError(f"this DT was trained on {self.meta.env_id}; task {episode.task!r} runs {env_id}: "
                             f"give --model a DT trained on {env_id}")
        if self.protocol == "window" and POLICIES.get(policy).holds_memory:
            raise ValueError("the window protocol re-encodes K steps and takes no memory policy: run it with "
                             f"policy {REFERENCE!r}, not {policy!r}")
        states = gym.make(env_id).observation_space.shape[0]
        sizes = {"the model's state_dim": self.model.config.state_dim, "dt_meta.json state_mean": len(self.mean)}
        wrong = {name: size for name, size in sizes.items() if size != states}
        if wrong:
            raise ValueError(f"{env_id} observations have {states} values but "
                             + ", ".join(f"{name} has {size}" for name, size in wrong.items()))

    def rollout(self, env_id: str, seed: int, max_steps: int, target_return: float,
                manager: MemoryManager) -> Prediction:
        """Act for up to ``max_steps`` steps from ``env.reset(seed=seed)``; see :meth:`run`."""
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._rollout(env_id, seed, max_steps, target_return, manager)
        finally:
            torch.set_num_threads(threads)

    def _rollout(self, env_id: str, seed: int, max_steps: int, target_return: float,
                 manager: MemoryManager) -> Prediction:
        env = gym.make(env_id)
        state, _ = env.reset(seed=seed)
        manager.new_cache()
        history: dict[str, list] = {"rtg": [], "states": [], "actions": [], "timesteps": []}
        rtg, total, prev_action, window_tokens = target_return, 0.0, None, 0
        start = time.perf_counter()
        model_seconds, step = 0.0, 0
        for step in range(max_steps):
            tick = time.perf_counter()
            if self.protocol == "cache":
                action = self.act_cached(manager, self.embed_step(rtg, state, step, prev_action))
            else:
                for key, value in zip(history, (rtg, state, np.zeros(env.action_space.shape), step)):
                    history[key].append(value)
                action = self.act_window(history, self.meta.context_steps)
                window_tokens += 3 * min(step + 1, self.meta.context_steps) - 1
            model_seconds += time.perf_counter() - tick
            prev_action = action.numpy()
            if self.protocol == "window":
                history["actions"][-1] = prev_action
            state, reward, terminated, truncated, _ = env.step(prev_action)
            total += float(reward)
            rtg -= float(reward)
            if terminated or truncated:
                break
        env.close()
        steps = step + 1
        seconds = time.perf_counter() - start
        stats = manager.stats() if self.protocol == "cache" else self._window_stats(window_tokens, steps)
        extra = {"protocol": self.protocol, "steps": steps, "target_return": target_return,
                 "model_seconds": model_seconds, "ms_per_step": 1000 * model_seconds / steps,
                 "context_steps": self.meta.context_steps if self.protocol == "window" else None}
        return Prediction(total, stats, seconds, extra)

    def _window_stats(self, window_tokens: int, steps: int) -> MemoryStats:
        """Statistics of the window protocol: the tokens each state token's pass holds (``3·min(t+1, K) − 1``
        before the placeholder action), averaged over steps; no memory updates."""
        cfg = self.model.config
        per_token = 2 * cfg.n_layer * cfg.hidden_size * 4  # keys + values, float32
        peak = 3 * min(steps, self.meta.context_steps)
        return MemoryStats(mean_kept=window_tokens / steps, peak_kept=float(peak), final_kept=float(peak),
                           peak_kv_bytes=peak * per_token, final_kv_bytes=peak * per_token,
                           tokens_seen=3 * steps)


@ADAPTERS.register("decision")
def _decision_adapter(model: str, **options) -> DecisionAdapter:
    return DecisionAdapter.from_pretrained(model, protocol="cache", **options)


@ADAPTERS.register("decision-window")
def _decision_window_adapter(model: str, **options) -> DecisionAdapter:
    return DecisionAdapter.from_pretrained(model, protocol="window", **options)
