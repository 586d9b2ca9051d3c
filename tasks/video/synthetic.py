"""Synthetic video tasks: needle frame, counting, temporal order (clips from :mod:`.clips`).

Each episode's clip is rendered from ``(task, seed, index)`` on the evaluation random stream (disjoint from
the streams the tiny video-LLM was trained on), written once as an H.264 mp4 with PyAV into the clip folder
(``--data-path`` when given, else ``<namm cache>/video_clips``) and read back by the adapter with decord,
all ``frames`` of it. With the tiny video-LLM's 4 visual tokens per frame, the default 64 frames are 256
visual tokens, well above cache budgets of 32–128 tokens per head.

The answer is one word; the metric is exact match of the first word of the prediction (accuracy). Chance:
needle 0.29 (colour 1/4, shape 1/3, asked equally often), count 0.25, order 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from namm_suite.atomic import write_bytes_atomic
from namm_suite.storage import cache_dir

from ..base import Episode, Task, TaskContext, TaskDataError, register_task, with_options
from .clips import CHANCE, EVAL_STREAM, clip_rng, make_clip
from .frames import encode_video

CLIP_VERSION = 3  # bump when the clip generator changes, so cached files are not reused


def clip_folder(context: TaskContext) -> Path:
    """Where synthetic clips are written: ``context.data_path``, else the suite's cache."""
    if context.data_path is not None:
        return Path(context.data_path)
    return cache_dir() / "video_clips"


@dataclass
class SyntheticVideoTask(Task):
    """A task of synthetic clips of one kind.

    Fields (task options):
        frames: frames per clip, all of them sampled by the adapter (>= 8).
        size: frame side in pixels (even, >= 16).
        count: episodes per seed when no ``--limit`` is given.
    """

    frames: int = 64
    size: int = 32
    count: int = 30

    kind: ClassVar[str] = ""
    key: ClassVar[int] = 0
    modality = "video"
    metric = "exact_match"
    source = "generated (PyAV mp4)"

    def __post_init__(self) -> None:
        if self.frames < 8:
            raise TaskDataError(f"must be >= 8, got {self.frames}", field="frames")
        if self.size < 16 or self.size % 2:
            raise TaskDataError(f"must be even and >= 16, got {self.size}", field="size")
        if self.count <= 0:
            raise TaskDataError(f"must be > 0, got {self.count}", field="count")

    @property
    def chance(self) -> float:
        """Accuracy of uniform guessing."""
        return CHANCE[self.kind]

    def _episodes(self, context: TaskContext) -> list[Episode]:
        folder = clip_folder(context)
        count = context.limit if context.limit is not None else self.count
        episodes = []
        for index in range(count):
            clip = make_clip(self.kind, clip_rng(EVAL_STREAM, self.key, context.seed, index), self.frames, self.size)
            path = folder / f"{self.name}-v{CLIP_VERSION}-f{self.frames}-p{self.size}-s{context.seed}-{index}.mp4"
            data = encode_video(clip.frames)  # deterministic: a cached file with other bytes is damaged
            if not path.is_file() or path.read_bytes() != data:
                write_bytes_atomic(path, data)
            episodes.append(Episode(
                task=self.name, episode_id=f"s{context.seed}-{index}",
                inputs={"video": str(path), "frames": self.frames, "question": clip.question},
                references=(clip.answer,), max_new_tokens=3,
                metadata={**clip.metadata, "frames": self.frames, "size": self.size},
            ))
        return episodes

    def episodes(self, context: TaskContext) -> list[Episode]:
        return with_options(self, context.options)._episodes(context)



@register_task("video_needle")
@dataclass
class VideoNeedle(SyntheticVideoTask):
    """One frame shows a coloured shape; what colour / which shape was it?"""

    kind: ClassVar[str] = "needle"
    key: ClassVar[int] = 1


@register_task("video_count")
@dataclass
class VideoCount(SyntheticVideoTask):
    """How many times does the screen flash white (1-4)?"""

    kind: ClassVar[str] = "count"
    key: ClassVar[int] = 2


@register_task("video_order")
@dataclass
class VideoOrder(SyntheticVideoTask):
    """Two coloured shapes appear in turn; which colour came first?"""

    kind: ClassVar[str] = "order"
    key: ClassVar[int] = 3
