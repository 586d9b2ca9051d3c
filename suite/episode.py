"""One episode: ``run_episode(adapter, task, episode, spec, budget, settings) -> ResultRow``.

The sweep runner calls it for every (task, seed, episode, policy, cache size) cell. It builds the policy
from its :class:`~namm_suite.policies.PolicySpec`, the manager from the budget and the settings, lets the
adapter run the episode, scores the output with the task's metric and returns a typed row. A failure is
a row too (``status: "error"``, the exception in one line, its traceback beside it, never written).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from .device import resolve_device
from .manager import MemoryConfig, MemoryManager
from .policies import PolicySpec
from .shipped import portable_path

logger = logging.getLogger(__name__)

CHAT_TEMPLATES = ("auto", "chat", "none")
#: prompt settings whose defaults stay out of resume keys (rows written before they existed keep resuming)
PROMPT_DEFAULTS = {"protocol": "scheduled", "evict": "schedule", "max_new_tokens": None, "chat_template": "auto"}


def parse_cache_size(value: int | str) -> tuple[int | str, float | None]:
    """A cache size as given (``128`` or ``"25%"``) -> ``(normalised value, fraction)``: ``(128, None)`` or
    ``("25%", 0.25)``; a size that is neither a positive integer nor a percentage in (0, 100] raises."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if 0 < percent <= 100:
                return f"{percent:g}%", percent / 100
        elif int(text) > 0:
            return int(text), None
    except ValueError:
        pass
    raise ValueError(f"cache size must be > 0 tokens per head or a percentage of the context in (0, 100] "
                     f"like 25%, got {value!r}")


@dataclass(frozen=True)
class EpisodeSettings:
    """How one episode runs and what its row records about the run.

    Attributes:
        adapter / model: names recorded in the row (the adapter object itself is passed separately).
        seed: the episode-generation seed. length: target prompt tokens (synthetic) or window (loaders).
        update_every: tokens between memory updates. protocol / evict: see :class:`MemoryConfig`.
        max_new_tokens: answer budget overriding the episode's (None: the task's own).
        chat_template: ``auto`` (the task's choice), ``chat`` or ``none``.
        device / dtype: as given (``auto``, ``fp32``); the row records the resolved device.
        task_options: the task's options, recorded in the row.
    """

    adapter: str
    model: str
    seed: int = 0
    length: int = 1024
    update_every: int = 64
    protocol: str = "scheduled"
    evict: str = "schedule"
    max_new_tokens: int | None = None
    chat_template: str = "auto"
    device: str = "auto"
    dtype: str = "fp32"
    task_options: dict[str, Any] = field(default_factory=dict)

    def prompt_settings(self) -> dict[str, Any]:
        """How prompts are fed (recorded in every row): protocol, eviction, answer budget, template."""
        return {name: getattr(self, name) for name in PROMPT_DEFAULTS}

    def apply(self, episode):
        """``episode`` with these settings' answer budget and chat-template choice, where they override the
        task's."""
        changes: dict[str, Any] = {}
        if self.max_new_tokens is not None:
            changes["max_new_tokens"] = self.max_new_tokens
        if self.chat_template != "auto" and "prompt" in episode.inputs:
            changes["inputs"] = {**episode.inputs, "chat": self.chat_template == "chat"}
        return dataclasses.replace(episode, **changes) if changes else episode

    def memory_config(self, budget: int | str | None) -> MemoryConfig:
        """The schedule for ``budget`` tokens per head (or a share, ``"25%"``; None: no budget)."""
        fraction = parse_cache_size(budget)[1] if budget is not None else None
        tokens = budget if fraction is None else None
        return MemoryConfig(update_every=self.update_every, budget=tokens, budget_fraction=fraction,
                            protocol=self.protocol, evict=self.evict)


@dataclass
class ResultRow:
    """One finished (or failed) episode, as one JSON line of the results file (:meth:`as_dict`).

    ``status`` is ``"ok"`` (then ``score``, ``prediction``, ``references``, ``stats`` and ``extra`` are set)
    or ``"error"`` (then ``error`` is the exception in one line and ``traceback`` its traceback, which
    :meth:`as_dict` leaves out). ``stats``: the manager's numbers (:meth:`MemoryStats.as_dict`), written
    flat into the row. ``label`` is written only when the policy spec names one.
    """

    task: str
    adapter: str
    model: str
    policy: str
    cache_size: int | str | None
    seed: int
    episode_id: str
    length: int
    update_every: int
    metric: str
    policy_options: dict[str, Any]
    task_options: dict[str, Any]
    episode_metadata: dict[str, Any]
    prompt: dict[str, Any]  # protocol, evict, max_new_tokens (the episode's), chat_template
    device: str
    dtype: str
    status: str
    wall_seconds: float
    label: str | None = None
    score: float | None = None
    prediction: Any = None
    references: list[Any] = field(default_factory=list)
    stats: dict[str, float | int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The row as written: the fields in the results file's order, ``stats`` flattened."""
        row: dict[str, Any] = {
            "task": self.task, "adapter": self.adapter, "model": self.model, "policy": self.policy,
            **({"label": self.label} if self.label else {}),
            "cache_size": self.cache_size, "seed": self.seed, "episode_id": self.episode_id,
            "length": self.length, "update_every": self.update_every, "metric": self.metric,
            "policy_options": self.policy_options, "task_options": self.task_options,
            "episode_metadata": self.episode_metadata, **self.prompt, "device": self.device, "dtype": self.dtype,
        }
        if self.status != "ok":
            return {**row, "status": self.status, "error": self.error, "wall_seconds": self.wall_seconds}
        return {**row, "status": "ok", "score": self.score, "prediction": self.prediction,
                "references": self.references, **self.stats, "extra": self.extra,
                "wall_seconds": self.wall_seconds}


def read_shared_prefix(adapter, episode, specs: list[PolicySpec], settings: EpisodeSettings):
    """``episode``'s compressed part read once for the cells of ``specs`` (a
    :class:`~namm_suite.shared_prefix.SharedPrefix`), or None: the protocol evicts while the prompt is read,
    the adapter cannot share it, or reading failed (each cell then reads the prompt alone and reports its
    own error)."""
    config = settings.memory_config(None)
    if not config.one_shot or not hasattr(adapter, "read_prefix"):
        return None
    reads_attention = any(spec.policy_class().needs_attention for spec in specs)
    try:
        return adapter.read_prefix(settings.apply(episode), config, reads_attention)
    except Exception:  # the cells run alone and each records the error
        logger.info("episode %s: the shared prefix failed", episode.episode_id, exc_info=True)
        return None


def answer_and_score(adapter, task, episode, manager: MemoryManager, prefix=None):
    """``(prediction, score)``: ``adapter`` answers ``episode`` under ``manager`` (from ``prefix`` when
    given) and ``task``'s metric scores the answer. The step every scored episode shares (sweeps, the
    evolution's metric fitness)."""
    prediction = adapter.run(episode, manager) if prefix is None else adapter.run(episode, manager, prefix)
    return prediction, task.score(prediction.output, episode)


def run_episode(adapter, task, episode, spec: PolicySpec, budget: int | str | None,
                settings: EpisodeSettings, prefix=None) -> ResultRow:
    """Run ``episode`` of ``task`` on ``adapter`` under policy ``spec`` (its options complete: nothing is
    filled in) with ``budget`` tokens per head (or a share, ``"25%"``; None for self-sized policies), and
    score it; from ``prefix`` (:func:`read_shared_prefix` of the same episode and settings) when given.
    Never raises for a failing episode: the row says ``status: "error"``."""
    from .tasks.base import options_for

    episode = settings.apply(episode)
    options = dict(spec.options)
    if "checkpoint" in options:
        options["checkpoint"] = portable_path(options["checkpoint"])
    row = ResultRow(
        task=task.name, adapter=settings.adapter, model=settings.model, policy=spec.name, label=spec.label,
        cache_size=budget, seed=settings.seed, episode_id=episode.episode_id, length=settings.length,
        update_every=settings.update_every, metric=task.metric, policy_options=options,
        task_options=options_for(task.name, settings.task_options), episode_metadata=episode.metadata,
        prompt={**settings.prompt_settings(), "max_new_tokens": episode.max_new_tokens},
        device=resolve_device(settings.device), dtype=settings.dtype, status="ok", wall_seconds=0.0,
    )
    start = time.perf_counter() - (prefix.seconds if prefix is not None else 0.0)  # a shared read counts
    try:
        manager = spec.build_manager(settings.memory_config(budget))
        prediction, score = answer_and_score(adapter, task, episode, manager, prefix)
    except Exception as err:  # a failed episode is recorded and the sweep goes on
        logger.info("episode %s failed", episode.episode_id, exc_info=True)  # the traceback with -v
        message = " ".join(str(err).split()) or type(err).__name__
        return dataclasses.replace(row, status="error", error=f"{type(err).__name__}: {message}",
                                   traceback=traceback.format_exc(), wall_seconds=time.perf_counter() - start)
    return dataclasses.replace(row, score=score, prediction=prediction.output, references=list(episode.references),
                               stats=prediction.stats.as_dict(), extra=prediction.extra,
                               wall_seconds=time.perf_counter() - start)
