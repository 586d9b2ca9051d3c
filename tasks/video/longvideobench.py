"""LongVideoBench (Wu et al., NeurIPS 2024 D&B): multiple-choice questions on long videos, accuracy.

Data as published (``longvideobench/LongVideoBench`` on the HF hub, extracted locally): the annotation file
``lvb_val.json`` (a JSON list) beside a ``videos/`` folder. Fields read per record:

- ``id`` (str): the episode id; ``video_path`` (str): the video, relative to ``videos/``;
- ``question`` (str) and ``candidates`` (list of 2–10 str): the prompt, built as the benchmark's
  ``LongVideoBenchDataset`` builds it (``Question: ...``, ``A. ...`` lines, answer with the letter);
- ``correct_choice`` (int): index of the right candidate (the test split, which has none, cannot be scored);
- ``duration`` (number), ``duration_group``, ``question_category``, ``video_id`` (optional): metadata.

``TaskContext.data_path`` is the annotation file or the folder holding it (``annotation`` option, default
``lvb_val.json``). Frames are sampled uniformly over the whole file (the benchmark samples within
``duration``, which is the whole file for its videos); subtitles are not interleaved.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import Episode, TaskContext, register_task, with_options
from ..sources import find_data_file
from .annotations import JsonRecord, MultipleChoiceVideoTask, build_episodes, candidates, read_json_list
from .prompts import LETTERS, longvideobench_prompt


@register_task("longvideobench")
@dataclass
class LongVideoBench(MultipleChoiceVideoTask):
    """LongVideoBench multiple choice (local lvb_val.json + videos/)."""

    annotation: str = "lvb_val.json"

    source = "local lvb_val.json + videos/"

    def episodes(self, context: TaskContext) -> list[Episode]:
        task = with_options(self, context.options)
        path = find_data_file(self.name, context.data_path, task.annotation)
        videos = path.parent / "videos"

        def build(record: JsonRecord) -> Episode:
            episode_id = record.text("id")
            options = candidates(record)
            choice = record.get("correct_choice", int)
            if not 0 <= choice < len(options):
                raise record.error(f"{choice} is not an index of the {len(options)} candidates", "correct_choice")
            metadata = {key: record.data[key] for key in ("duration", "duration_group", "question_category",
                                                          "video_id") if key in record.data}
            return Episode(
                self.name, episode_id,
                {"video": str(videos / record.text("video_path")), "frames": task.frames,
                 "question": longvideobench_prompt(record.text("question"), options)},
                (LETTERS[choice],), max_new_tokens=8, metadata=metadata,
                scoring={"all_classes": list(LETTERS[:len(options)])},
            )

        return build_episodes(self.name, read_json_list(path), build, task.strict, context.limit)
