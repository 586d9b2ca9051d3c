"""The adapter protocol: one verb, ``run(episode, manager) -> Prediction``, and the adapter registry.

The built-in adapters are registered by module path and imported on first use, so this module imports
none of them (no registration circle) and ``namm --help`` loads no model code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from namm_suite.manager import MemoryManager, MemoryStats
from namm_suite.registry import Registry
from namm_suite.tasks.base import Episode

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """What an adapter produced for one episode.

    Attributes:
        output: the prediction the task scores (answer text for language and video tasks).
        stats: the memory manager's statistics for the episode (kept tokens per head, KV bytes, updates).
        seconds: wall time of the episode.
        extra: adapter-specific numbers worth recording (token counts, prefill/decode time, ...).
    """

    output: Any
    stats: MemoryStats
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    """Turns a task episode into model calls under a :class:`MemoryManager`.

    Attributes:
        modality: "language", "video" or "decision" (the tasks it runs).
        tokenizer: the model's tokenizer, which tasks use to size prompts in the model's own tokens
            (``TaskContext.tokenizer``); None for models without text (the Decision Transformer).
    """

    modality: str
    tokenizer: Any

    def run(self, episode: Episode, manager: MemoryManager) -> Prediction: ...


class PositionGuard:
    """Warns once per model (one line on stderr, through logging) when a prompt is longer than the model's
    maximum positions (``config.max_position_embeddings``; models without one are never warned about)."""

    def __init__(self, config: Any) -> None:
        self.limit: int | None = getattr(config, "max_position_embeddings", None)
        self.warned = False

    def check(self, tokens: int, what: str = "prompt") -> None:
        """Warn if ``tokens`` (the prompt's length in tokens, described by ``what``) exceeds the limit."""
        if self.limit is None or tokens <= self.limit or self.warned:
            return
        self.warned = True
        logger.warning("%s: %d tokens, %d more than the model's maximum positions (%d); positions past %d were "
                       "never trained and answers may be wrong (shown once per model)",
                       what, tokens, tokens - self.limit, self.limit, self.limit)


ADAPTERS: Registry[Callable[..., Adapter]] = Registry("adapter")
#: the embedded model each built-in adapter runs when none is named (``namm run``, sweep files)
DEFAULT_MODELS = {"language": "smollm2-135m", "video": "tiny-video-llm", "decision": "dt-hopper",
                  "decision-window": "dt-hopper"}
for _name, _target in (("language", "language:_language_adapter"), ("video", "video:_video_adapter"),
                       ("decision", "decision:_decision_adapter"),
                       ("decision-window", "decision:_decision_window_adapter")):
    ADAPTERS.register_lazy(_name, f"{__package__}.{_target}")


def default_model(adapter: str) -> str:
    """The model ``adapter`` runs when none is named: its :data:`DEFAULT_MODELS` entry (the language
    adapter's for an adapter without one)."""
    return DEFAULT_MODELS.get(adapter, DEFAULT_MODELS["language"])


def create_adapter(name: str, model: str | None = None, **options: Any) -> Adapter:
    """Build the adapter registered as ``name`` for ``model`` (embedded name or local checkpoint path;
    None: :func:`default_model`)."""
    return ADAPTERS.get(name)(model or default_model(name), **options)
