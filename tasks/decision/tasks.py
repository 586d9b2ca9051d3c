"""Decision tasks: one Gymnasium MuJoCo environment each, scored by the D4RL-normalised return.

An episode is one environment rollout: the adapter acts for at most ``TaskContext.length // 3`` steps (the
length is measured in tokens, as for every other modality, and a Decision Transformer step is three tokens:
return-to-go, state, action), capped by the environment's own time limit (1000 steps for these three). The
adapter's output is the undiscounted episode return; the score is ``100 * (R - random) / (expert - random)``
with D4RL's reference returns (see :mod:`.envs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from namm_suite.tasks.base import Episode, Task, TaskContext, register_task

from .envs import EnvSpec, env_spec

TOKENS_PER_STEP = 3


@dataclass
class GymTask(Task):
    """Act in a MuJoCo environment; score the D4RL-normalised return.

    Attributes:
        episodes_per_seed: rollouts per seed when ``TaskContext.limit`` is not given (>= 1).
        target_return: return-to-go the model is conditioned on (None: the model's own default, its
            ``dt_meta.json`` ``target_return``; DT paper values: 3600 hopper, 6000 halfcheetah, 5000 walker2d).
    """

    env: str = ""
    episodes_per_seed: int = 1
    target_return: float | None = None
    modality = "decision"
    metric = "d4rl_normalised_return"
    source = "generated (Gymnasium MuJoCo rollouts)"

    def __post_init__(self) -> None:
        if self.episodes_per_seed < 1:
            raise ValueError(f"{self.name}: episodes_per_seed must be >= 1, got {self.episodes_per_seed}")

    @property
    def spec(self) -> EnvSpec:
        return env_spec(self.env)

    def episodes(self, context: TaskContext) -> list[Episode]:
        """``limit`` (or ``episodes_per_seed``) rollouts; environment seed ``1000 * seed + i``."""
        max_steps = context.length // TOKENS_PER_STEP
        if max_steps < 1:
            raise ValueError(f"{self.name}: length {context.length} tokens is less than one step "
                             f"({TOKENS_PER_STEP} tokens)")
        count = context.limit or self.episodes_per_seed
        return [
            Episode(self.name, f"s{context.seed}-{i}",
                    {"env_id": self.spec.env_id, "env_seed": 1000 * context.seed + i, "max_steps": max_steps,
                     "target_return": self.target_return},
                    references=(), metadata={"env_id": self.spec.env_id, "max_steps": max_steps})
            for i in range(count)
        ]

    def score(self, prediction: float, episode: Episode) -> float:
        """D4RL-normalised score of the episode return ``prediction``."""
        return self.spec.normalised_score(float(prediction))


@register_task("hopper")
@dataclass
class HopperTask(GymTask):
    """Hopper-v5 with a Decision Transformer; D4RL-normalised return."""

    env: str = "hopper"


@register_task("halfcheetah")
@dataclass
class HalfCheetahTask(GymTask):
    """HalfCheetah-v5 with a Decision Transformer; D4RL-normalised return."""

    env: str = "halfcheetah"


@register_task("walker2d")
@dataclass
class Walker2dTask(GymTask):
    """Walker2d-v5 with a Decision Transformer; D4RL-normalised return."""

    env: str = "walker2d"
