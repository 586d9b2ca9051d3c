"""Multiple-choice prompts and the letter-accuracy metric of the LongVideoBench and MLVU loaders.

Both benchmarks ask a question about a video with lettered options and score accuracy: a prediction is
right when the option letter it picks is the correct one. The prompts are the benchmarks' own:

- LongVideoBench (``longvideobench_dataset.py``): ``"Question: {q}"``, one ``"A. {option}"`` line per
  candidate, then ``"Answer with the option's letter from the given choices directly."``;
- MLVU (``choice_bench.py``): ``"Question: {q}"``, ``"Options:"``, one ``"(A) {option}"`` line per
  candidate, then ``"Only give the best option."``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..metrics import metric

LETTERS = "ABCDEFGHIJ"
LVB_INSTRUCTION = "Answer with the option's letter from the given choices directly."
MLVU_INSTRUCTION = "Only give the best option."
# the templates' words, so that the tiny video-LLM's word-level tokenizer knows them
MC_WORDS = sorted({*(c.lower() for c in LETTERS), "question", "options", ":", "(", ")", ".", "'",
                   *re.findall(r"\w+", (LVB_INSTRUCTION + " " + MLVU_INSTRUCTION).lower())})


def _check(candidates: Sequence[str]) -> None:
    if not 2 <= len(candidates) <= len(LETTERS):
        raise ValueError(f"need 2-{len(LETTERS)} candidates, got {len(candidates)}")


def longvideobench_prompt(question: str, candidates: Sequence[str]) -> str:
    """LongVideoBench's multiple-choice prompt."""
    _check(candidates)
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(candidates))
    return f"Question: {question.strip()}\n{options}\n{LVB_INSTRUCTION}"


def mlvu_prompt(question: str, candidates: Sequence[str]) -> str:
    """MLVU's multiple-choice prompt."""
    _check(candidates)
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(candidates))
    return f"Question: {question.strip()}\nOptions:\n{options}\n{MLVU_INSTRUCTION}"


def chosen_letter(prediction: str, n_options: int) -> str | None:
    """The option letter a free-form answer picks: a leading ``A``/``(A)``/``A.``, else the first standalone
    capital letter among the first ``n_options``; None when there is none."""
    valid = LETTERS[:n_options]
    text = prediction.strip()
    match = re.match(r"^\(?([A-J])\b", text, flags=re.IGNORECASE)
    if match and match.group(1).upper() in valid:
        return match.group(1).upper()
    match = re.search(rf"\b([{valid}])\b", text)
    return match.group(1) if match else None


def letter_accuracy(prediction: str, correct: str, n_options: int) -> float:
    """1.0 when ``prediction`` picks option letter ``correct``, else 0.0."""
    return float(chosen_letter(prediction, n_options) == correct)


@metric("accuracy")
def option_accuracy(prediction: str, reference: str, all_classes: Sequence[str] | None = None, **_) -> float:
    """Multiple choice: 1.0 when ``prediction`` picks the option letter ``reference`` among the
    ``len(all_classes)`` options (letters A..), else 0.0."""
    return letter_accuracy(prediction, reference, len(all_classes or LETTERS))


@metric("exact_match")
def first_word_match(prediction: str, reference: str, **_) -> float:
    """One-word answers (synthetic clips): the prediction's first word, lower-cased, equals ``reference``."""
    words = prediction.strip().lower().split()
    return float(bool(words) and words[0] == reference)
