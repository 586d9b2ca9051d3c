"""LongBench-format loaders: LongBench, LongBench-E, ChouBun and user YAML tasks share one record schema.

Data: JSON lines, one object per line, as published by THUDM/LongBench (``data/<dataset>.jsonl`` and
``data/<dataset>_e.jsonl`` in ``data.zip``). The fields read:

- ``context`` (str) and ``input`` (str): substituted into the dataset's prompt template (``{context}``,
  ``{input}``; user templates may name any field of the record);
- ``answers`` (list of str, non-empty): the references; the score is the maximum over them;
- ``all_classes`` (list of str or null): the label set, required by ``classification_score`` (trec, lsht);
- ``_id`` (str, optional): the episode id (``line<N>`` when absent);
- ``length`` (int, optional), ``dataset``, ``language`` (str, optional): kept in the episode metadata;
  LongBench-E episodes also get ``length_bucket`` ("0-4k", "4-8k", "8k+" by ``length``, as ``scorer_e``).

Prompts are cut in the middle to ``TaskContext.length - max_new_tokens`` tokens of ``TaskContext.tokenizer``
(no cut without a tokenizer), before any chat template, as LongBench's ``pred.py`` does. Datasets marked
``chat: false`` (few-shot and code completion) are sent without the chat template, and for datasets marked
``first_line: true`` only the first line of the prediction is scored.

``TaskContext.data_path`` is the JSONL file itself, or a folder holding ``<file>`` or ``<benchmark>/<file>``.
The benchmarks are declared in YAML next to this module and registered lazily (:mod:`.benchmarks`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import Episode, Task, TaskContext, register_task, with_options
from ..metrics import METRICS, best_score
from ..sources import Record, YamlDoc, find_data_file, iter_jsonl, read_yaml
from .truncation import prompt_budget, prompt_layout, truncate_middle, warn_truncated

HERE = Path(__file__).resolve().parent
SPEC_FIELDS = {"prompt": str, "metric": str, "max_new_tokens": int, "chat": bool, "first_line": bool,
               "description": str}
REQUIRED_SPEC_FIELDS = ("prompt", "metric", "max_new_tokens")


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is prompted and scored.

    Attributes:
        dataset: the dataset's name in its benchmark (``qasper``); data file names derive from it.
        prompt: ``str.format`` template over the record's fields.
        metric: a name registered in :data:`~.metrics.METRICS`.
        max_new_tokens: answer budget in tokens (LongBench's ``dataset2maxlen``).
        chat: wrap the prompt in the model's chat template (LongBench: not for few-shot/code datasets).
        first_line: score only the prediction's first line (LongBench: trec, triviaqa, samsum, lsht).
        description: one line for ``namm tasks``.
    """

    dataset: str
    prompt: str
    metric: str
    max_new_tokens: int
    chat: bool = True
    first_line: bool = False
    description: str = ""


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names a ``str.format`` template uses (ValueError for a malformed template)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def parse_spec(doc: YamlDoc, keys: tuple[str | int, ...], entry: Any, dataset: str,
               allowed_fields: set[str] | None = None) -> DatasetSpec:
    """A :class:`DatasetSpec` from the YAML mapping ``entry`` found at ``keys`` in ``doc``, validated; errors
    name the file, the line and the field. ``allowed_fields`` limits the template's ``{fields}``."""
    if not isinstance(entry, dict):
        raise doc.error(f"expected a mapping with {', '.join(REQUIRED_SPEC_FIELDS)}", *keys)
    for key, value in entry.items():
        if key not in SPEC_FIELDS:
            raise doc.error(f"unknown field; valid fields: {', '.join(sorted(SPEC_FIELDS))}", *keys, key)
        kind = SPEC_FIELDS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise doc.error(f"expected {kind.__name__}, got {type(value).__name__}", *keys, key)
    for key in REQUIRED_SPEC_FIELDS:
        if key not in entry:
            raise doc.error("is missing", *keys, key)
    try:
        METRICS.get(entry["metric"])
    except KeyError as err:  # the registry's message: did you mean, and the valid names
        raise doc.error(str(err), *keys, "metric") from None
    if entry["max_new_tokens"] < 1:
        raise doc.error(f"must be >= 1, got {entry['max_new_tokens']}", *keys, "max_new_tokens")
    try:
        names = template_fields(entry["prompt"])
    except ValueError as err:
        raise doc.error(f"malformed template ({err})", *keys, "prompt") from None
    for name in names:
        if not name.isidentifier() or (allowed_fields is not None and name not in allowed_fields):
            valid = ", ".join(sorted(allowed_fields)) if allowed_fields else "record field names"
            raise doc.error(f"template field {{{name}}} is not allowed; use {valid}", *keys, "prompt")
    return DatasetSpec(dataset=dataset, **entry)


class LongBenchFormatTask(Task):
    """A task over LongBench-format JSONL records (see the module docstring). Subclasses are made per
    dataset by :func:`make_task` and set the class attributes below."""

    spec: DatasetSpec
    benchmark: str = ""  # folder name tried under a data folder, e.g. "longbench"
    file_name: str = ""  # data file name inside a data folder, e.g. "qasper.jsonl"
    data_file: Path | None = None  # a fixed data file (user YAML tasks); wins over TaskContext.data_path
    answers_field: str = "answers"
    id_field: str = "_id"
    length_buckets: bool = False

    def data_path(self, given: Path | None) -> Path:
        """The JSONL file to read (a fixed ``data_file`` wins over ``TaskContext.data_path``)."""
        if self.data_file is not None:
            return self.data_file
        return find_data_file(self.name, given, self.file_name, self.benchmark)

    def episodes(self, context: TaskContext) -> list[Episode]:
        with_options(self, context.options)  # rejects any option: these tasks have none
        budget = None
        if context.tokenizer is not None:
            budget = prompt_budget(context.length, self.spec.max_new_tokens, self.name)
        out: list[Episode] = []
        for record in iter_jsonl(self.data_path(context.data_path)):
            if context.limit is not None and len(out) >= context.limit:
                break
            out.append(self.episode(record, context.tokenizer, budget))
        if budget is not None:
            warn_truncated(self.name, [e.metadata["n_tokens"] for e in out if e.metadata["truncated"]], len(out),
                           budget)
        return out

    def references(self, record: Record) -> list[str]:
        return record.texts(self.answers_field)

    def episode(self, record: Record, tokenizer: Any, budget: int | None) -> Episode:
        references = self.references(record)
        all_classes = record.texts("all_classes", default=None, allow_empty=True)
        if self.spec.metric == "classification_score" and not all_classes:
            raise record.error("is required (a list of class names) by classification_score", "all_classes")
        prompt = format_prompt(self.spec.prompt, record)
        metadata: dict[str, Any] = {"dataset": self.spec.dataset, "line": record.line}
        if budget is not None:
            prompt, n_tokens, truncated = truncate_middle(prompt, tokenizer, budget)
            metadata.update(n_tokens=n_tokens, truncated=truncated)
        for key in ("length", "language"):
            if record.data.get(key) is not None:
                metadata[key] = record.get(key, int if key == "length" else str)
        if self.length_buckets and "length" in metadata:
            n = metadata["length"]
            metadata["length_bucket"] = "0-4k" if n < 4000 else "4-8k" if n < 8000 else "8k+"
        episode_id = str(record.get(self.id_field, (str, int), default=f"line{record.line}"))
        inputs = {"prompt": prompt, "chat": self.spec.chat,
                  **prompt_layout(self.spec.prompt, lambda part: format_prompt(part, record), prompt)}
        if "input" in record.data and isinstance(record.data["input"], str):
            inputs["question"] = record.data["input"]
        return Episode(task=self.name, episode_id=episode_id, inputs=inputs,
                       references=tuple(references), max_new_tokens=self.spec.max_new_tokens,
                       metadata=metadata, scoring={"all_classes": all_classes})

    def score(self, prediction: str, episode: Episode) -> float:
        """Maximum of the dataset's metric over the references (LongBench ``scorer``), in [0, 1]."""
        if self.spec.first_line:
            prediction = prediction.lstrip("\n").split("\n")[0]
        return best_score(self.spec.metric, prediction, episode.references, episode.scoring.get("all_classes"))


def format_prompt(template: str, record: Record) -> str:
    """``template`` filled with the record's fields; a field the template needs but the record lacks (or
    holds as null) raises :class:`TaskDataError` naming file, line and field."""
    values = {}
    for name in template_fields(template):
        value = record.data.get(name)
        if value is None:
            raise record.error(f"is missing (the prompt template uses {{{name}}})", name)
        values[name] = value
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError, TypeError) as err:  # e.g. "{length:d}" over a string
        raise record.error(f"cannot fill the prompt template {template!r}: {type(err).__name__}: {err}",
                           "prompt") from None


def make_task(name: str, spec: DatasetSpec, source: str, base: type[LongBenchFormatTask] = LongBenchFormatTask,
              **attributes: Any) -> type[LongBenchFormatTask]:
    """Register and return a subclass of ``base`` for one dataset (``attributes`` set its class attributes)."""
    cls_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "Task"
    doc = f"{spec.dataset}: {spec.description}" if spec.description else spec.dataset
    cls = type(cls_name, (base,), {"spec": spec, "metric": spec.metric, "source": source,
                                   "description": spec.description, "__doc__": doc,
                                   "__module__": base.__module__, **attributes})
    return register_task(name)(cls)


def register_benchmark(path: Path) -> list[str]:
    """Register one task per dataset declared in the benchmark YAML at ``path``; returns the names.

    Schema: ``benchmark`` (folder name), ``source``, ``task_prefix``, ``file`` (data file pattern with
    ``{dataset}``), ``template_fields`` (allowed ``{fields}``), ``datasets`` (name -> spec fields, see
    :class:`DatasetSpec`), and optional ``variants`` (list of ``prefix``, ``file``, ``source``, ``datasets``:
    the same datasets again under another prefix and file pattern, e.g. LongBench-E).
    """
    doc = read_yaml(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    for key in ("benchmark", "source", "task_prefix", "file", "datasets"):
        if key not in data:
            raise doc.error("is missing", key)
    allowed = set(data.get("template_fields", ["context", "input"]))
    specs = {ds: parse_spec(doc, ("datasets", ds), entry, ds, allowed) for ds, entry in data["datasets"].items()}
    names = []
    common = {"benchmark": data["benchmark"]}
    for ds, spec in specs.items():
        names.append(data["task_prefix"] + ds)
        make_task(names[-1], spec, f"{data['source']}; {data['file'].format(dataset=ds)}",
                  file_name=data["file"].format(dataset=ds), **common)
    for i, variant in enumerate(data.get("variants", [])):
        for j, ds in enumerate(variant["datasets"]):
            if ds not in specs:
                raise doc.error(f"unknown dataset {ds!r}", "variants", i, "datasets", j)
            names.append(variant["prefix"] + ds)
            file_name = variant["file"].format(dataset=ds)
            make_task(names[-1], specs[ds], f"{variant['source']}; {file_name}", file_name=file_name,
                      length_buckets=bool(variant.get("length_buckets", False)), **common)
    return names

