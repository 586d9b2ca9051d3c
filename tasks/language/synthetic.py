"""Synthetic long-context retrieval tasks, generated offline from a seed at any length in the model's tokens.

- ``passkey`` (Mohtashami & Jaggi, 2023): a 5-digit pass key hidden at a depth in filler text.
- ``multikey_needle`` (RULER's multi-key NIAH, Hsieh et al., 2024): several needles "The special magic
  number for <key> is <value>."; one key is asked.
- ``kv_retrieval`` (Liu et al., 2023 "Lost in the Middle"; InfiniteBench): a JSON object of random UUID
  key-value pairs filling the prompt; the value of one key is asked.
- ``variable_tracking`` (RULER): chains ``VAR A = 12345.``, ``VAR B = VAR A.``, ... in filler text; the
  model lists the variables that hold the queried value.

Each task is a dataclass whose fields are its options (``TaskContext.options`` overrides them, see
:func:`~namm_suite.tasks.base.with_options`). Episodes form the grid ``lengths x depths x repeats``;
episode *i* of a cell is a pure function of (task, seed, length, depth, i) and the tokenizer, so the same
seed gives the same episodes and ``episode_id`` is stable. Prompt lengths are measured with
``TaskContext.tokenizer`` and come within half a filler unit of the target (see :mod:`.haystack`); the
measured length is ``metadata["n_tokens"]``.
"""

from __future__ import annotations

import dataclasses
import random
import string
import uuid
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

from ..base import Episode, Task, TaskContext, TaskDataError, register_task, with_options
from .haystack import NOISE, Fitted, Haystack, fit, require_tokenizer, tokens_per_unit
from .metrics import contains, fraction_present

SOURCE = "generated offline from the seed (no data files)"
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
_ADJECTIVES = ("amber", "brave", "calm", "dusty", "eager", "fancy", "gentle", "hollow", "icy", "jolly", "keen",
               "lucky", "misty", "noble", "odd", "proud", "quiet", "rapid", "silent", "tidy", "upper", "vivid",
               "witty", "young", "zesty", "bold", "crisp", "dark", "early", "fuzzy", "grand", "humble")
_NOUNS = ("anchor", "badger", "cactus", "dolphin", "ember", "falcon", "glacier", "harbor", "island", "jaguar",
          "kettle", "lantern", "meadow", "nectar", "orchid", "pebble", "quartz", "river", "saddle", "thistle",
          "umbrella", "violin", "walnut", "yarrow", "zephyr", "beacon", "canyon", "draper", "engine", "forest",
          "garnet", "helmet")


def _noise(i: int) -> str:
    return NOISE[i % len(NOISE)]


def _fit_haystack(tokenizer: Any, length: int, haystack: Haystack) -> Fitted:
    fitted = fit(tokenizer, length, haystack.render, tokens_per_unit(tokenizer, haystack.unit, haystack.sep))
    return dataclasses.replace(fitted, suffix=haystack.suffix)


def prompt_inputs(fitted: Fitted) -> dict[str, Any]:
    """Language episode inputs: the prompt, and the context (all but the question after the haystack) and
    the question apart (see :class:`~namm_suite.tasks.base.Episode`)."""
    context = fitted.prompt[:len(fitted.prompt) - len(fitted.suffix)]
    return {"prompt": fitted.prompt, "chat": True, "context": context, "question": fitted.suffix.strip()}


@dataclass
class SyntheticTask(Task):
    """Base of the synthetic tasks: the episode grid, seeding and option validation.

    Attributes:
        lengths: target prompt lengths in tokens (each >= 64); None = ``(TaskContext.length,)``.
        repeats: episodes per (length, depth) cell, each with fresh random content (>= 1).
        first_repeat: index of the first of them (>= 0). Repeat r of a cell is the same prompt whatever
            the run, so ``repeats: 5, first_repeat: 5`` adds prompts 5..9 to an earlier ``repeats: 5`` run.
        max_new_tokens: answer budget in tokens (>= 1).
    """

    lengths: tuple[int, ...] | None = None
    repeats: int = 1
    first_repeat: int = 0
    max_new_tokens: int = 16

    source = SOURCE

    def __post_init__(self) -> None:
        if self.lengths is not None:
            self.lengths = tuple(self.lengths)
            if not self.lengths or any(not isinstance(n, int) or n < 64 for n in self.lengths):
                raise TaskDataError(f"must be integers >= 64 tokens, got {self.lengths}", field="lengths")
        _check_int(self.repeats, "repeats", 1)
        _check_int(self.first_repeat, "first_repeat", 0)
        _check_int(self.max_new_tokens, "max_new_tokens", 1)

    def cells(self) -> list[float | None]:
        """The depths of the grid (None for tasks without a depth)."""
        return [None]

    @abstractmethod
    def build(self, tokenizer: Any, length: int, depth: float | None, rng: random.Random
              ) -> tuple[Fitted, tuple[str, ...], dict[str, Any]]:
        """One prompt of about ``length`` tokens: (fitted prompt, references, extra metadata)."""

    def episodes(self, context: TaskContext) -> list[Episode]:
        task = with_options(self, context.options)
        tokenizer = require_tokenizer(context.tokenizer, self.name)
        out: list[Episode] = []
        for length in task.lengths or (context.length,):
            for depth in task.cells():
                for r in range(task.first_repeat, task.first_repeat + task.repeats):
                    if context.limit is not None and len(out) >= context.limit:
                        return out
                    rng = random.Random(f"{self.name}|{context.seed}|{length}|{depth}|{r}")
                    fitted, references, extra = task.build(tokenizer, length, depth, rng)
                    cell = f"-d{depth:g}" if depth is not None else ""
                    out.append(Episode(
                        task=self.name, episode_id=f"s{context.seed}-L{length}{cell}-r{r}",
                        inputs=prompt_inputs(fitted), references=references,
                        max_new_tokens=task.max_new_tokens,
                        metadata={"length": length, "n_tokens": fitted.n_tokens, "depth": depth, "repeat": r,
                                  **extra}))
        return out

    def score(self, prediction: str, episode: Episode) -> float:
        """1.0 when the reference occurs in the prediction, else 0.0."""
        return contains(prediction, episode.references[0])


@dataclass
class _DepthTask(SyntheticTask):
    """A synthetic task with a needle depth grid (``depths``: fractions in [0, 1], 0 = start)."""

    depths: tuple[float, ...] = DEFAULT_DEPTHS

    def __post_init__(self) -> None:
        super().__post_init__()
        self.depths = tuple(self.depths)
        if not self.depths or any(not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0 for d in self.depths):
            raise TaskDataError(f"must be numbers in [0, 1], got {self.depths}", field="depths")

    def cells(self) -> list[float | None]:
        return [float(d) for d in self.depths]


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise TaskDataError(f"must be an integer {bound}, got {value!r}", field=name)


# --------------------------------------------------------------------------------------------- passkey
PASSKEY_PREFIX = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
                  "I will quiz you about the important information there.\n\n")
PASSKEY_QUESTION = "What is the pass key? Answer with the number only."


def passkey_prompt(tokenizer: Any, n_tokens: int, depth: float, key: str) -> Fitted:
    """A passkey prompt of at most ``n_tokens`` tokens (within a few) with ``key`` at ``depth``."""
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    haystack = Haystack(PASSKEY_PREFIX, "\n\n" + PASSKEY_QUESTION, _noise, [(depth, needle)])
    return _fit_haystack(tokenizer, n_tokens, haystack)


@register_task("passkey")
@dataclass
class PasskeyTask(_DepthTask):
    """Passkey retrieval: a 5-digit key at a depth in repeated filler (Mohtashami & Jaggi, 2023)."""

    max_new_tokens: int = 12

    metric = "contains"
    description = "5-digit pass key hidden at a depth in filler text; answer the key"

    def build(self, tokenizer, length, depth, rng):
        key = str(rng.randint(10000, 99999))
        return passkey_prompt(tokenizer, length, depth, key), (key,), {}


@dataclass(frozen=True)
class PasskeyEpisode:
    """One passkey prompt (the functional API used by ``namm demo``). ``depth`` in [0, 1]."""

    prompt: str
    answer: str
    depth: float
    seed: int


def make_passkey(tokenizer: Any, n_tokens: int, depth: float, seed: int) -> PasskeyEpisode:
    """A passkey prompt of about ``n_tokens`` tokens of ``tokenizer`` with a 5-digit key at ``depth``."""
    if n_tokens < 64:
        raise ValueError(f"passkey: n_tokens must be >= 64, got {n_tokens}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"passkey: depth must be in [0, 1], got {depth}")
    key = str(random.Random(seed).randint(10000, 99999))
    return PasskeyEpisode(passkey_prompt(tokenizer, n_tokens, depth, key).prompt, key, depth, seed)


def passkey_score(prediction: str, answer: str) -> float:
    """1.0 when the answer's digits appear in the prediction, else 0.0."""
    return contains(prediction, answer)


# ------------------------------------------------------------------------------------- multi-key needle
@register_task("multikey_needle")
@dataclass
class MultiKeyNeedleTask(_DepthTask):
    """Multi-key needle in a haystack (RULER): ``n_needles`` key/number needles; the one at ``depth`` is asked.

    Attributes:
        n_needles: needles in the haystack, in [1, 64]; the distractors sit at random depths.
    """

    n_needles: int = 4
    max_new_tokens: int = 32  # room for chat models that answer with the whole needle sentence

    metric = "contains"
    description = "several 'special magic number for <key>' needles; answer the asked key's 7-digit number"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.n_needles, "n_needles", 1, 64)

    def build(self, tokenizer, length, depth, rng):
        pairs = rng.sample([(a, b) for a in _ADJECTIVES for b in _NOUNS], self.n_needles)
        keys = [f"{a}-{b}" for a, b in pairs]
        values = [str(v) for v in rng.sample(range(1_000_000, 10_000_000), self.n_needles)]
        depths = [depth] + [rng.random() for _ in range(self.n_needles - 1)]
        needles = [(d, f"The special magic number for {k} is {v}.") for d, k, v in zip(depths, keys, values)]
        haystack = Haystack(
            "Some special magic numbers are hidden inside the following text. Make sure to memorize them. "
            "I will quiz you about the numbers afterwards.\n\n",
            f"\n\nWhat is the special magic number for {keys[0]} mentioned in the text above? "
            "Answer with the number only.", _noise, needles)
        return _fit_haystack(tokenizer, length, haystack), (values[0],), {"key": keys[0]}


# ----------------------------------------------------------------------------------------- kv retrieval
@register_task("kv_retrieval")
@dataclass
class KVRetrievalTask(_DepthTask):
    """Key-value retrieval: a JSON object of random UUID pairs filling the prompt; the pair at ``depth``
    (a fraction of the object) is asked (Liu et al., 2023; InfiniteBench kv_retrieval)."""

    max_new_tokens: int = 48

    metric = "contains"
    description = "JSON object of random UUID key-value pairs; answer the value of the asked key"

    def build(self, tokenizer, length, depth, rng):
        def new_uuid() -> str:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))

        key, value = new_uuid(), new_uuid()
        filler: list[str] = []

        def unit(i: int) -> str:  # the i-th filler pair is the i-th draw, whatever the order of requests
            while len(filler) <= i:
                filler.append(f'"{new_uuid()}": "{new_uuid()}"')
            return filler[i]

        haystack = Haystack(
            "Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n{",
            f'}}\n\nWhat is the value associated with the key "{key}" in the JSON object above? '
            "Answer with the value only.", unit, [(depth, f'"{key}": "{value}"')], sep=", ")
        fitted = _fit_haystack(tokenizer, length, haystack)
        return fitted, (value,), {"key": key, "n_pairs": fitted.n_units + 1}


# ------------------------------------------------------------------------------------ variable tracking
@register_task("variable_tracking")
@dataclass
class VariableTrackingTask(SyntheticTask):
    """Variable tracking (RULER): ``n_chains`` chains of ``n_hops`` assignments spread evenly in filler;
    the answer is every variable of the first chain. Score: share of those names in the prediction.

    Attributes:
        n_chains: independent chains (the others are distractors with other values), in [1, 16].
        n_hops: assignments after the first in each chain (a chain names ``n_hops + 1`` variables), in [1, 32].
    """

    n_chains: int = 1
    n_hops: int = 4
    max_new_tokens: int = 32

    metric = "fraction_present"
    description = "chains VAR A = 12345, VAR B = VAR A, ...; list every variable holding the value"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.n_chains, "n_chains", 1, 16)
        _check_int(self.n_hops, "n_hops", 1, 32)

    def build(self, tokenizer, length, depth, rng):
        names: list[str] = []
        while len(names) < self.n_chains * (self.n_hops + 1):
            name = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
            if name not in names:
                names.append(name)
        chains = [names[c * (self.n_hops + 1):(c + 1) * (self.n_hops + 1)] for c in range(self.n_chains)]
        values = [str(v) for v in rng.sample(range(10000, 100000), self.n_chains)]
        statements = [f"VAR {chain[0]} = {value}." if hop == 0 else f"VAR {chain[hop]} = VAR {chain[hop - 1]}."
                      for hop in range(self.n_hops + 1) for chain, value in zip(chains, values)]
        needles = [((k + 1) / (len(statements) + 1), s) for k, s in enumerate(statements)]
        haystack = Haystack(
            "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n",
            f"\n\nQuestion: Find all variables that are assigned the value {values[0]} in the text above. "
            "Answer with the variable names only, separated by commas.", _noise, needles)
        return _fit_haystack(tokenizer, length, haystack), tuple(chains[0]), {"value": values[0]}

    def score(self, prediction: str, episode: Episode) -> float:
        """Share of the expected variable names present in the prediction (RULER ``string_match_all``)."""
        return fraction_present(prediction, episode.references)
