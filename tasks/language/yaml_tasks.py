"""User task folders: one YAML file per task, registered by :func:`load_task_dir` (``namm tasks
--include-path DIR``), as lm-eval's external task folders.

A task file (every error names the file, the line and the field)::

    name: my_qa                 # registry name (letters, digits, _ - .)
    format: longbench           # record schema (or `loader:`): longbench, choubun or infinitebench
    data_path: data/my_qa.jsonl # JSONL data, relative to this file; optional (else TaskContext.data_path)
    data_file: qa.jsonl         # optional, instead of data_path: the file looked for when --data-path is a
                                # folder (DIR/qa.jsonl, then DIR/<format>/qa.jsonl; default: <name>.jsonl)
    metric: qa_f1_score         # any name in tasks.language.metrics.METRICS
    prompt: "Read this.\\n\\n{context}\\n\\nQuestion: {input}\\nAnswer:"   # str.format over record fields
    max_new_tokens: 32
    chat: true                  # optional (default true): wrap in the model's chat template
    first_line: false           # optional: score only the prediction's first line
    description: my QA set      # optional, shown by `namm tasks`

Schemas: ``longbench``/``choubun`` records carry ``answers`` (list of str) and optionally ``all_classes``,
``_id``, ``length``; ``infinitebench`` records carry ``answer`` (a value or a list) and optionally ``id``.
Prompts are cut in the middle to the window, and the score is the metric's maximum over the references,
as for LongBench (see :mod:`.longbench`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..base import TASKS, TaskDataError
from ..sources import Record, read_yaml
from .longbench import SPEC_FIELDS, LongBenchFormatTask, make_task, parse_spec

TOP_FIELDS = ("name", "format", "loader", "data_path", "data_file")


class InfiniteBenchFormatTask(LongBenchFormatTask):
    """User tasks over InfiniteBench-schema records: references from ``answer``, ids from ``id``."""

    answers_field = "answer"
    id_field = "id"

    def references(self, record: Record) -> list[str]:
        answer = record.get("answer", (list, str, int, float))
        labels = answer if isinstance(answer, list) else [answer]
        if not labels or any(isinstance(x, (bool, dict, list)) or x is None for x in labels):
            raise record.error("expected a value or a non-empty list of strings or numbers", "answer")
        return [str(x) for x in labels]


FORMATS: dict[str, type[LongBenchFormatTask]] = {
    "longbench": LongBenchFormatTask, "choubun": LongBenchFormatTask, "infinitebench": InfiniteBenchFormatTask}


def load_task_file(path: Path) -> str:
    """Register the task defined by the YAML file ``path``; returns its name.

    Loading the same unchanged file twice is a no-op; another definition of a registered name is an error.
    """
    path = Path(path).resolve()
    doc = read_yaml(path)
    data = doc.data
    if not isinstance(data, dict):
        raise TaskDataError("expected a mapping of task fields (name, format, metric, prompt, ...)", path, 1)
    name = data.get("name")
    if name is None:
        raise doc.error("is missing", "name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise doc.error(f"must be letters, digits, '_', '-' or '.', got {name!r}", "name")
    fmt = _format(doc, data)
    data_file = None
    if data.get("data_path") is not None:
        if not isinstance(data["data_path"], str):
            raise doc.error("expected a path string", "data_path")
        data_file = (path.parent / data["data_path"]).resolve()
        if not data_file.is_file():
            raise doc.error(f"no such data file: {data_file}", "data_path")
    file_name = data.get("data_file", f"{name}.jsonl")
    if not isinstance(file_name, str) or not file_name or Path(file_name).name != file_name:
        raise doc.error(f"expected a file name (no folders) looked for in --data-path, got {file_name!r}",
                        "data_file")
    if data_file is not None and "data_file" in data:
        raise doc.error("give data_path (a fixed file) or data_file (a name looked for in --data-path), "
                        "not both", "data_file")
    for key in data:
        if key not in SPEC_FIELDS and key not in TOP_FIELDS:
            raise doc.error(f"unknown field; valid fields: {', '.join(sorted({*SPEC_FIELDS, *TOP_FIELDS}))}", key)
    spec = parse_spec(doc, (), {k: v for k, v in data.items() if k not in TOP_FIELDS}, name)
    if name in TASKS:
        existing = TASKS.get(name)
        same = (getattr(existing, "definition", None) == path and getattr(existing, "spec", None) == spec
                and getattr(existing, "data_file", None) == data_file and issubclass(existing, FORMATS[fmt])
                and getattr(existing, "file_name", None) == (data_file.name if data_file else file_name))
        if same:
            return name
        where = getattr(existing, "definition", None) or existing.source or existing.__module__
        raise doc.error(f"task {name!r} is already registered (by {where})", "name")
    make_task(name, spec, f"user task {path}" + (f"; {data_file.name}" if data_file else ""),
              base=FORMATS[fmt], data_file=data_file, definition=path, benchmark=fmt,
              file_name=data_file.name if data_file else file_name)
    return name


def _format(doc, data: dict) -> str:
    given = {key: data[key] for key in ("format", "loader") if data.get(key) is not None}
    if not given:
        raise doc.error(f"is missing (one of: {', '.join(FORMATS)})", "format")
    for key, value in given.items():
        if not isinstance(value, str) or value not in FORMATS:
            raise doc.error(f"unknown {key} {value!r}; valid: {', '.join(FORMATS)}", key)
    if len(set(given.values())) > 1:
        raise doc.error(f"format {given['format']!r} and loader {given['loader']!r} disagree", "loader")
    return next(iter(given.values()))


def load_task_dir(path: Path) -> list[str]:
    """Register every ``*.yaml`` / ``*.yml`` task file under ``path`` (recursively, in sorted order), or
    the single file ``path``; returns the registered names."""
    path = Path(path)
    if path.is_file():
        return [load_task_file(path)]
    if not path.is_dir():
        raise TaskDataError("no such task folder", path)
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [load_task_file(f) for f in files]
