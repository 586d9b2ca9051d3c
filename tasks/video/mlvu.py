"""MLVU (Zhou et al., 2024) multiple-choice tasks: questions on long videos, accuracy per question type.

Data as published (``MLVU/MVLU`` dev set on the HF hub, extracted locally)::

    MLVU/json/1_plotQA.json, 2_needle.json, 3_ego.json, 4_count.json, 5_order.json, 6_anomaly_reco.json, ...
    MLVU/video/1_plotQA/<video>.mp4, MLVU/video/2_needle/..., ...

Each annotation file is a JSON list; fields read per record:

- ``video`` (str): file name inside ``video/<annotation file stem>/``;
- ``question`` (str) and ``candidates`` (list of 2–10 str): the prompt, built as MLVU's ``choice_bench.py``
  builds it (``Question: ...``, ``Options:``, ``(A) ...`` lines, ``Only give the best option.``);
- ``answer`` (str): the right candidate's text (it must be one of ``candidates``);
- ``question_type`` (str, optional; the file stem when absent) and ``duration`` (optional): metadata.

``TaskContext.data_path`` is the MLVU root (holding ``json/``) or one annotation file. The open-ended
generation files (``*sub_scene*``, ``*summary*``) have no candidates and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..base import Episode, TaskContext, TaskDataError, register_task, with_options
from .annotations import JsonRecord, MultipleChoiceVideoTask, build_episodes, candidates, read_json_list
from .prompts import LETTERS, mlvu_prompt

GENERATION_FILES = ("sub_scene", "summary")


def annotation_files(data_path: Path | None) -> list[Path]:
    """The multiple-choice annotation files under ``data_path`` (a root holding ``json/``, or one file)."""
    if data_path is None:
        raise TaskDataError("task 'mlvu' reads local data: set --data-path to the MLVU root (holding json/) "
                            "or to one annotation file")
    data_path = Path(data_path)
    if data_path.is_file():
        return [data_path]
    files = sorted(p for p in (data_path / "json").glob("*.json") if not any(g in p.stem for g in GENERATION_FILES))
    if not files:
        raise TaskDataError("no multiple-choice annotation files in json/", data_path)
    return files


@register_task("mlvu")
@dataclass
class MLVU(MultipleChoiceVideoTask):
    """MLVU multiple choice (local json/*.json + video/<task>/)."""

    source = "local MLVU json/ + video/"

    def episodes(self, context: TaskContext) -> list[Episode]:
        task = with_options(self, context.options)
        episodes: list[Episode] = []
        for path in annotation_files(context.data_path):
            videos = path.parent.parent / "video" / path.stem

            def build(record: JsonRecord, stem: str = path.stem, videos: Path = videos) -> Episode:
                options = candidates(record)
                answer = record.text("answer")
                if answer not in options:
                    raise record.error(f"{answer!r} is not one of the candidates", "answer")
                metadata = {"question_type": record.text("question_type", stem), "file": stem}
                if "duration" in record.data:
                    metadata["duration"] = record.data["duration"]
                return Episode(
                    self.name, f"{stem}-{record.line - 1}",
                    {"video": str(videos / record.text("video")), "frames": task.frames,
                     "question": mlvu_prompt(record.text("question"), options)},
                    (LETTERS[options.index(answer)],), max_new_tokens=8, metadata=metadata,
                    scoring={"all_classes": list(LETTERS[:len(options)])},
                )

            remaining = None if context.limit is None else context.limit - len(episodes)
            if remaining == 0:
                break
            episodes.extend(build_episodes(self.name, read_json_list(path), build, task.strict, remaining,
                                           id_prefix=f"{path.stem}-"))
        return episodes
