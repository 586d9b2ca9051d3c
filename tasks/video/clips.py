"""Synthetic video clips drawn from a random generator: needle frame, counting, temporal order.

Every clip is a dark, slightly noisy grey background (random level) with a faint square drifting across it
(so no two frames are equal); the events are drawn on top:

- **needle**: one frame shows a coloured shape (red/green/blue/yellow × square/circle/triangle); the
  question asks its colour (chance 1/4) or its shape (chance 1/3).
- **count**: 1–4 frames flash white; the question asks how many (chance 1/4).
- **order**: two frames show shapes of two different colours; the question names both colours in random
  order and asks which came first (chance 1/2).

Questions and answers are lower-case words (the tiny video-LLM's vocabulary is :data:`VOCABULARY`). A clip
is a pure function of the generator's state, so ``numpy.random.default_rng(key)`` with a fixed key gives
the same clip on every machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35), "green": (35, 205, 50), "blue": (40, 80, 240), "yellow": (235, 220, 40),
}
SHAPES = ("square", "circle", "triangle")
NUMBERS = ("one", "two", "three", "four")
FLASH = 235
QUESTIONS = {
    "needle_color": "what color was the shape ?",
    "needle_shape": "what shape was shown ?",
    "count": "how many flashes ?",
    "order": "which came first : {} or {} ?",
}
# every word a synthetic question or answer uses (the tiny video-LLM's tokenizer is built from it)
VOCABULARY = sorted({w for q in QUESTIONS.values() for w in q.replace("{}", "").split()}
                    | set(COLORS) | set(SHAPES) | set(NUMBERS))
CHANCE = {"needle": (1 / 4 + 1 / 3) / 2, "count": 1 / len(NUMBERS), "order": 1 / 2}
# Random streams: evaluation episodes, training clips and training-time validation never share a key.
EVAL_STREAM, TRAIN_STREAM, VALID_STREAM = 0, 1, 2


def clip_rng(stream: int, *key: int) -> np.random.Generator:
    """The generator of one clip: ``stream`` (one of the ``*_STREAM`` constants) plus integer ``key``."""
    return np.random.default_rng([stream, *key])


@dataclass(frozen=True)
class Clip:
    """One synthetic clip: frames uint8 ``[N, S, S, 3]``, the question, its answer word, and where the
    events are (frame indices, for the results row)."""

    frames: np.ndarray
    question: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)


def background(rng: np.random.Generator, n_frames: int, size: int) -> np.ndarray:
    """Float ``[N, S, S, 3]``: a dark random grey with a faint tint, pixel noise (σ = 3) and a faint grey
    square drifting across. (Busy, coloured backgrounds hide the events from a model that still averages
    over frames: the tiny video-LLM then never starts to learn colours and shapes.)"""
    base = rng.uniform(15, 60) + rng.uniform(-4, 4, size=3)
    frames = base + rng.normal(0, 3, size=(n_frames, size, size, 3))
    side = max(size // 6, 2)
    start, end = rng.uniform(0, size - side, size=2), rng.uniform(0, size - side, size=2)
    for t in range(n_frames):
        y, x = (start + (end - start) * t / max(n_frames - 1, 1)).astype(int)
        frames[t, y:y + side, x:x + side] += 25
    return frames


def draw_shape(frame: np.ndarray, rng: np.random.Generator, color: str, shape: str) -> None:
    """Draw a filled ``shape`` of ``color`` (side 55–80% of the frame) at a random place, in place."""
    size = frame.shape[0]
    side = int(rng.integers(int(size * 0.55), int(size * 0.8) + 1))
    y0, x0 = rng.integers(0, size - side + 1, size=2)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    if shape == "square":
        mask = np.ones((side, side), bool)
    elif shape == "circle":
        mask = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 <= (side / 2) ** 2
    elif shape == "triangle":  # apex up
        mask = np.abs(xx - side / 2) <= yy / 2
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    region = frame[y0:y0 + side, x0:x0 + side]
    region[mask] = COLORS[color]


def spaced_indices(rng: np.random.Generator, n_frames: int, k: int, gap: int = 2) -> list[int]:
    """``k`` sorted frame indices in ``[0, n_frames)`` with at least ``gap`` other frames between two."""
    slack = n_frames - (k - 1) * gap
    if slack < k:
        raise ValueError(f"{n_frames} frames cannot hold {k} events with {gap} frames between them")
    picks = np.sort(rng.choice(slack, size=k, replace=False))
    return [int(p) + i * gap for i, p in enumerate(picks)]


def needle_clip(rng: np.random.Generator, n_frames: int, size: int, ask: str | None = None) -> Clip:
    """One frame shows a coloured shape; ``ask`` is "color" or "shape" (random when None)."""
    frames = background(rng, n_frames, size)
    color, shape = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
    index = int(rng.integers(n_frames))
    draw_shape(frames[index], rng, color, shape)
    ask = ask or str(rng.choice(["color", "shape"]))
    answer = color if ask == "color" else shape
    return Clip(_to_uint8(frames), QUESTIONS[f"needle_{ask}"], answer,
                {"needle_frame": index, "ask": ask, "color": color, "shape": shape})


def count_clip(rng: np.random.Generator, n_frames: int, size: int) -> Clip:
    """1–4 frames flash white, two other frames at least between flashes (fewer flashes in clips under 10
    frames, which only the training curriculum uses)."""
    frames = background(rng, n_frames, size)
    k = int(rng.integers(1, min(len(NUMBERS), (n_frames + 2) // 3) + 1))
    indices = spaced_indices(rng, n_frames, k)
    frames[indices] = FLASH + rng.normal(0, 4, size=(k, size, size, 3))
    return Clip(_to_uint8(frames), QUESTIONS["count"], NUMBERS[k - 1], {"flash_frames": indices})


def order_clip(rng: np.random.Generator, n_frames: int, size: int) -> Clip:
    """Two shapes of different colours appear in two frames; which colour came first?"""
    frames = background(rng, n_frames, size)
    first, second = (str(c) for c in rng.choice(list(COLORS), size=2, replace=False))
    indices = spaced_indices(rng, n_frames, 2)
    for index, color in zip(indices, (first, second)):
        draw_shape(frames[index], rng, color, str(rng.choice(SHAPES)))
    named = [first, second] if rng.random() < 0.5 else [second, first]
    return Clip(_to_uint8(frames), QUESTIONS["order"].format(*named), first,
                {"event_frames": indices, "first": first, "second": second})


KINDS: dict[str, Callable[..., Clip]] = {"needle": needle_clip, "count": count_clip, "order": order_clip}


def make_clip(kind: str, rng: np.random.Generator, n_frames: int, size: int) -> Clip:
    """A clip of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; valid: {', '.join(KINDS)}")
    return KINDS[kind](rng, n_frames, size)


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)
