"""InfiniteBench loaders (Zhang et al., 2024): ~100k-token retrieval, book, math and code tasks.

Data: the release's ``<task>.jsonl`` files, one JSON object per line. The fields read:

- ``context`` (str): the long document; ``input`` (str): the question or instruction;
- ``answer`` (list of str / int / float, or one such value): the labels; choice tasks (longbook_choice_eng,
  code_debug) give the correct option's text (or ``[text, letter]``), turned into ``[text, letter]`` as in
  ``get_answer``; ``options`` (list of 4 str): required by the choice tasks;
- ``id`` (int or str, optional): the episode id (``line<N>`` when absent).

Prompts are InfiniteBench's chat-model (``gpt4``) templates, filled as ``create_prompt`` does (``question`` is
``input``; ``OPTION_A``..``OPTION_D`` the options; math_find's ``prefix`` and code_run's ``func``/``func_call``
are parsed from ``input``), then cut in the middle to ``TaskContext.length - max_new_tokens`` tokens. Scorers
re-implement ``compute_scores.py`` ``get_score_one_<task>`` (0 or 1, or F1 for the QA tasks), quirks
included; an empty prediction scores 0 where the original would raise. The scorers are registered in the
one metric registry (per episode, over the raw labels); the QA tasks use LongBench's ``qa_f1_score`` /
``qa_f1_zh_score``, the best over the labels, as ``get_score_one_longbook_qa_*``. Templates, answer budgets
and metric names are declared in ``infinitebench.yaml``, in the benchmark schema of :mod:`.longbench`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..base import Episode, Task, TaskContext, register_task, with_options
from ..metrics import metric, score_episode
from ..sources import Record, find_data_file, iter_jsonl, read_yaml
from .longbench import DatasetSpec, parse_spec
from .truncation import prompt_budget, prompt_layout, truncate_middle, warn_truncated

Labels = list[Any]
CHOICE_TASKS = ("longbook_choice_eng", "code_debug")
TEMPLATE_FIELDS = {"context", "input", "question", "OPTION_A", "OPTION_B", "OPTION_C", "OPTION_D", "prefix",
                   "func", "func_call"}


def first_int_match(prediction: str) -> str:
    """The first run of digits in ``prediction`` ("" if none)."""
    return next((item for item in re.split("[^0-9]", prediction) if item != ""), "")


def _words(prediction: str, chars: str) -> list[str]:
    for c in chars:
        prediction = prediction.replace(c, " ")
    return prediction.split()


def _squeeze(text: str, chars: list[str]) -> str:
    for c in chars:
        text = text.replace(c, " ")
    while "  " in text:
        text = text.replace("  ", " ")
    return text


@metric("first_int_match", per_reference=False)
def score_first_int(prediction: str, labels: Labels) -> float:
    """passkey, number_string: the first integer in the prediction equals the label."""
    return float(str(labels[0]) == first_int_match(prediction))


@metric("kv_word_match", per_reference=False)
def score_kv(prediction: str, labels: Labels) -> float:
    """kv_retrieval: the label is one of the prediction's words (split on punctuation and quotes)."""
    return float(str(labels[0]) in _words(prediction, "\n:\"'.,?!{}"))


def _after_prefix(pred: str, prefixes: tuple[str, ...]) -> str | None:
    """The text one character after the first of ``prefixes`` found in ``pred`` (InfiniteBench's rule);
    "" when the prediction ends there, None when no prefix occurs."""
    for prefix in prefixes:
        idx = pred.find(prefix)
        if idx != -1:
            return pred[idx + len(prefix) + 1:]
    return None


@metric("choice_accuracy", per_reference=False)
def score_choice(prediction: str, labels: Labels) -> float:
    """longbook_choice_eng: a leading letter, a letter/text after "answer is" etc., or the first word that is
    a substring of "ABCD" (the original's ``word in "ABCD"``) must match ``[text, letter]``."""
    if not prediction:
        return 0.0
    if prediction[0] in "ABCD":
        return float(prediction[0] in labels)
    pred = _squeeze(prediction, ["\n", '"', "'", ".", ",", "?", "!", "{", "}"])
    after = _after_prefix(pred, ("answer is:", "answer:", "answer is", "option is"))
    if after is not None:
        return float(any(after.startswith(str(label)) for label in labels))
    for word in pred.split():
        if word in "ABCD":
            return float(word in labels)
    return 0.0


@metric("code_debug_match", per_reference=False)
def score_code_debug(prediction: str, labels: Labels) -> float:
    """code_debug: "<letter>." / "<letter>:" at the start, or the letter or function name right after
    "answer is:", "is:" or "answer:"."""
    name, letter = str(labels[0]), str(labels[1])
    if prediction[:2] in (f"{letter}.", f"{letter}:"):
        return 1.0
    pred = _squeeze(prediction.strip(), ["\n", "`", "'", '"', "-", "*", "Option", "option"])
    after = _after_prefix(pred, ("answer is:", "is:", "answer:"))
    if after is not None:
        return float(after.startswith((letter, name)))
    return 0.0


@metric("name_match", per_reference=False)
def score_name(prediction: str, labels: Labels) -> float:
    """longdialogue_qa_eng: the label is one of the prediction's upper-cased words."""
    return float(str(labels[0]) in [w.upper() for w in _words(prediction, "\n:\"'.,?!{}")])


@metric("number_match", per_reference=False)
def score_number(prediction: str, labels: Labels) -> float:
    """math_find: the first number in the prediction equals the label (int or float)."""
    label = labels[0]
    found = re.search(r"\d+\.\d+|\d+", prediction)
    if found is None:
        return 0.0
    text = found.group(0).strip()
    if isinstance(label, int) and not isinstance(label, bool):
        return float(text.isdigit() and int(text) == label)  # the original raises on "3.5" vs an int label
    return float(float(text) == float(label))


@metric("code_run_match", per_reference=False)
def score_code_run(prediction: str, labels: Labels) -> float:
    """code_run: the prediction's last word is the integer label."""
    words = _words(prediction.strip(), "\n.`'\":")
    try:
        return float(bool(words) and int(words[-1]) == int(labels[0]))
    except ValueError:
        return 0.0


class InfiniteBenchTask(Task):
    """One InfiniteBench task (see the module docstring); made per task by :func:`register_infinitebench`."""

    spec: DatasetSpec
    file_name: str
    chat = True

    @property
    def task(self) -> str:
        """The task's name in InfiniteBench (``kv_retrieval``)."""
        return self.spec.dataset

    def episodes(self, context: TaskContext) -> list[Episode]:
        with_options(self, context.options)
        budget = None
        if context.tokenizer is not None:
            budget = prompt_budget(context.length, self.spec.max_new_tokens, self.name)
        out: list[Episode] = []
        for record in iter_jsonl(find_data_file(self.name, context.data_path, self.file_name, "infinitebench")):
            if context.limit is not None and len(out) >= context.limit:
                break
            labels = self.labels(record)
            fields = self.fields(record)
            prompt = self.spec.prompt.format(**fields)
            metadata: dict[str, Any] = {"line": record.line}
            if budget is not None:
                prompt, n_tokens, truncated = truncate_middle(prompt, context.tokenizer, budget)
                metadata.update(n_tokens=n_tokens, truncated=truncated)
            episode_id = str(record.get("id", (str, int), default=f"line{record.line}"))
            inputs = {"prompt": prompt, "chat": self.chat, "question": fields["input"],
                      **prompt_layout(self.spec.prompt, lambda part, fields=fields: part.format(**fields), prompt)}
            out.append(Episode(task=self.name, episode_id=episode_id, inputs=inputs,
                               references=tuple(str(label) for label in labels),
                               max_new_tokens=self.spec.max_new_tokens, metadata=metadata, scoring={"labels": labels}))
        if budget is not None:
            warn_truncated(self.name, [e.metadata["n_tokens"] for e in out if e.metadata["truncated"]], len(out),
                           budget)
        return out

    def labels(self, record: Record) -> Labels:
        answer = record.get("answer", (list, str, int, float))
        labels = answer if isinstance(answer, list) else [answer]
        if not labels or any(not isinstance(x, (str, int, float)) or isinstance(x, bool) for x in labels):
            raise record.error("expected a non-empty list of strings or numbers", "answer")
        if self.task in CHOICE_TASKS:
            options = self.options(record)
            if len(labels) == 2 and labels[1] in ("A", "B", "C", "D"):
                return labels
            if len(labels) != 1 or labels[0] not in options:
                raise record.error(f"{labels!r} is not one of the options", "answer")
            return [labels[0], "ABCD"[options.index(labels[0])]]
        return labels

    def options(self, record: Record) -> list[str]:
        options = record.texts("options")
        if len(options) < 4:
            raise record.error(f"expected 4 options, got {len(options)}", "options")
        return options

    def fields(self, record: Record) -> dict[str, Any]:
        """The template's values for ``record`` (as InfiniteBench's ``create_prompt``)."""
        text = record.text("input")
        values: dict[str, Any] = {"context": record.text("context"), "input": text, "question": text}
        if self.task in CHOICE_TASKS:
            values.update(zip(("OPTION_A", "OPTION_B", "OPTION_C", "OPTION_D"), self.options(record)))
        if self.task == "math_find":
            found = re.findall(r"The .+ of", text)
            if not found:
                raise record.error("has no 'The <target> of' to build the question from", "input")
            values["prefix"] = f"What is {found[0].lower()[:-3]} in the following list?"
        if self.task == "code_run":
            found = re.findall(r"func_[0-9]+\(\-?[0-9]+\)", text)
            if not found:
                raise record.error("has no call func_<n>(<int>)", "input")
            values.update(func_call=found[0], func=found[0].split("(")[0])
        return values

    def score(self, prediction: str, episode: Episode) -> float:
        """The task's InfiniteBench scorer (1/0, or F1 for the QA tasks)."""
        return score_episode(self.spec.metric, prediction, episode)


def register_infinitebench(path: Path) -> list[str]:
    """Register one task per entry of ``datasets`` in ``infinitebench.yaml`` (the benchmark schema of
    :func:`.longbench.register_benchmark`); returns the names."""
    doc = read_yaml(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    for key in ("source", "task_prefix", "file", "datasets"):
        if key not in data:
            raise doc.error("is missing", key)
    allowed = set(data.get("template_fields", TEMPLATE_FIELDS))
    names = []
    for task, entry in data["datasets"].items():
        spec = parse_spec(doc, ("datasets", task), entry, task, allowed)
        file_name = data["file"].format(dataset=task)
        cls = type("InfiniteBench" + "".join(p.capitalize() for p in task.split("_")) + "Task", (InfiniteBenchTask,), {
            "spec": spec, "metric": spec.metric, "file_name": file_name,
            "source": f"{data['source']}; {file_name}", "description": spec.description,
            "__doc__": f"InfiniteBench {task}: {spec.description}", "__module__": __name__})
        names.append(register_task(data["task_prefix"] + task)(cls).name)
    return names
