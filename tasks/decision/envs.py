"""Gymnasium MuJoCo environments with D4RL's reference returns and the normalised score.

D4RL (Fu et al., 2020, ``d4rl/infos.py``) normalises an episode return ``R`` as
``100 * (R - random) / (expert - random)``, with the returns of a uniform-random policy and of an expert
measured on the ``-v2`` environments. The suite acts in Gymnasium's ``-v5`` environments, whose dynamics,
observations and rewards match ``-v2`` closely but not bit for bit, so scores are comparable with published
D4RL numbers only approximately (state this wherever they are reported).
"""

from __future__ import annotations

from dataclasses import dataclass

from namm_suite.registry import Registry


@dataclass(frozen=True)
class EnvSpec:
    """One MuJoCo environment and its D4RL reference returns.

    Attributes:
        name: short name, also the task name (``"hopper"``).
        env_id: Gymnasium id (``"Hopper-v5"``).
        random_return / expert_return: D4RL's ``REF_MIN_SCORE`` / ``REF_MAX_SCORE`` (undiscounted return over
            up to 1000 steps).
        return_scale: divisor of returns-to-go fed to the model (DT paper: 1000).
    """

    name: str
    env_id: str
    random_return: float
    expert_return: float
    return_scale: float = 1000.0

    def normalised_score(self, episode_return: float) -> float:
        """D4RL normalised score: 0 = random policy, 100 = expert."""
        return 100.0 * (episode_return - self.random_return) / (self.expert_return - self.random_return)


ENVS: Registry[EnvSpec] = Registry("environment")


def _register(spec: EnvSpec) -> EnvSpec:
    return ENVS.register(spec.name)(spec)


HOPPER = _register(EnvSpec("hopper", "Hopper-v5", -20.272305, 3234.3))
HALFCHEETAH = _register(EnvSpec("halfcheetah", "HalfCheetah-v5", -280.178953, 12135.0))
WALKER2D = _register(EnvSpec("walker2d", "Walker2d-v5", 1.629008, 4592.3))


def env_spec(name_or_id: str) -> EnvSpec:
    """The :class:`EnvSpec` for a short name (``"hopper"``) or Gymnasium id (``"Hopper-v5"``); anything
    else raises ``ValueError`` listing the valid ones."""
    for spec in (ENVS.get(n) for n in ENVS.names()):
        if name_or_id in (spec.name, spec.env_id):
            return spec
    valid = ", ".join(f"{ENVS.get(n).name} ({ENVS.get(n).env_id})" for n in ENVS.names())
    raise ValueError(f"unknown environment {name_or_id!r}; valid environments: {valid}")


def normalised_score(env: str, episode_return: float) -> float:
    """D4RL normalised score of ``episode_return`` in environment ``env`` (short name or Gymnasium id)."""
    return env_spec(env).normalised_score(episode_return)
