"""Multiple-choice video annotations (LongVideoBench, MLVU): JSON lists of records, validated one by one.

A record with a bad field does not stop a sweep: it becomes an episode whose ``error`` holds the message
(naming the file, the record and the field), which the video adapter refuses with a
:class:`~namm_suite.tasks.base.TaskDataError` (``Episode.check``), so the runner records an error row and
goes on. With the task option ``strict: true`` the loader raises at once instead. A file that is missing or is
not a JSON list always raises.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..base import Episode, Task, TaskDataError
from ..sources import Record, decode_utf8


@dataclass(frozen=True)
class JsonRecord(Record):
    """Record ``line - 1`` (0-based) of a JSON list; errors say ``record N`` instead of a line number."""

    def error(self, message: str, field: str | None = None) -> TaskDataError:
        label = self.data.get("id", self.data.get("video", "")) if isinstance(self.data, dict) else ""
        name = f"record {self.line - 1}" + (f" ({label})" if isinstance(label, str) and label else "")
        return TaskDataError(f"{name}: {message}", self.path, None, field)


def read_json_list(path: Path) -> list[JsonRecord]:
    """The records of a JSON file holding a list of objects."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError("no such annotation file", path)
    try:
        data = json.loads(decode_utf8(path.read_bytes(), path))
    except json.JSONDecodeError as err:
        raise TaskDataError(f"malformed JSON ({err})", path) from None
    if not isinstance(data, list):
        raise TaskDataError(f"expected a JSON list of records, got {type(data).__name__}", path)
    records = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise TaskDataError(f"record {index}: expected a JSON object, got {type(item).__name__}", path)
        records.append(JsonRecord(path, index + 1, item))
    return records


def candidates(record: Record, field: str = "candidates") -> list[str]:
    """The record's answer options: 2–10 strings."""
    options = record.texts(field)
    if not 2 <= len(options) <= 10:
        raise record.error(f"expected 2-10 options, got {len(options)}", field)
    return options


def build_episodes(task: str, records: list[JsonRecord], build: Callable[[JsonRecord], Episode],
                   strict: bool, limit: int | None, id_prefix: str = "record") -> list[Episode]:
    """``build`` each record (at most ``limit``); a :class:`TaskDataError` becomes an invalid episode with id
    ``<id_prefix><record index>`` (``strict``: it is raised)."""
    episodes = []
    for record in records[:limit]:
        try:
            episodes.append(build(record))
        except TaskDataError as error:
            if strict:
                raise
            episodes.append(Episode(task, f"{id_prefix}{record.line - 1}", {}, (), metadata={"error": str(error)},
                                    error=str(error)))
    return episodes


@dataclass
class MultipleChoiceVideoTask(Task):
    """What the LongVideoBench and MLVU tasks share: frames sampled per video, strict or per-record errors,
    and letter accuracy (metric ``accuracy``) over each episode's option letters ``scoring["all_classes"]``."""

    frames: int = 32
    strict: bool = False

    modality = "video"
    metric = "accuracy"

    def __post_init__(self) -> None:
        if self.frames <= 0:
            raise TaskDataError(f"must be > 0, got {self.frames}", field="frames")

