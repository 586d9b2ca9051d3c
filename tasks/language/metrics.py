"""Text metrics of the long-context benchmarks, re-implemented without their third-party packages.

Every metric scores one prediction against one reference answer, ``metric(prediction, reference,
all_classes=None) -> float`` in [0, 1], and is registered in the one metric registry
(:data:`namm_suite.tasks.metrics.METRICS`) under its published name; :func:`best_score` takes the maximum
over a list of references, as LongBench's ``scorer`` does.

Sources and deliberate differences:

- LongBench ``metrics.py`` (THUDM/LongBench): ``qa_f1_score`` with ``normalize_answer`` (SQuAD-style),
  ``classification_score`` (including its remove-while-iterating quirk), ``retrieval_score``,
  ``retrieval_zh_score``, ``count_score`` are reproduced verbatim in behaviour.
- ``rouge_score`` is ROUGE-L F with the ``rouge`` package's semantics (see :mod:`.rouge`).
- Chinese (``qa_f1_zh_score``, ``rouge_zh_score``) and Japanese (ChouBun's ``qa_f1_ja_score``,
  ``rouge_ja_score``) tokenise **per character** instead of with jieba / fugashi-MeCab words, which are not
  available here: F1 counts common characters after ``normalize_zh_answer``; ROUGE joins the
  non-space characters with spaces. (InfiniteBench's own ``qa_f1_score_zh`` is per character too.)
  Scores are therefore close to, but not identical with, published Chinese/Japanese numbers.
- ``code_sim_score`` uses fuzzywuzzy's ``fuzz.ratio`` in its pure-Python form (no python-Levenshtein):
  ``int(round(100 * difflib.SequenceMatcher(None, a, b).ratio())) / 100``, with fuzzywuzzy's special cases
  (equal strings score 1.0, otherwise an empty string scores 0.0).
"""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from collections.abc import Sequence

from ..metrics import METRICS, best_score, metric
from .rouge import rouge_l_f

__all__ = ["METRICS", "best_score", "metric"]  # re-exported: the registry lives in tasks/metrics.py

_ZH_PUNCTUATION = "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
_ALL_PUNCTUATION = set(string.punctuation + _ZH_PUNCTUATION)
_EN_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation and the articles a/an/the, collapse whitespace (SQuAD)."""
    text = "".join(ch for ch in text.lower() if ch not in _EN_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def normalize_zh_answer(text: str) -> str:
    """Lower-case, drop ASCII and CJK punctuation, remove all whitespace (LongBench's Chinese variant)."""
    return "".join("".join(ch for ch in text.lower() if ch not in _ALL_PUNCTUATION).split())


def f1_score(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """Token-multiset F1 between two token lists (0.0 when nothing is shared)."""
    common = Counter(prediction) & Counter(reference)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(reference)
    return 2 * precision * recall / (precision + recall)


def fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy ``fuzz.ratio`` (pure-Python path): similarity 0-100 from difflib's matching blocks."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    return round(100 * difflib.SequenceMatcher(None, a, b).ratio())  # half to even, as Python 3's round


def _chars(text: str) -> str:
    return " ".join(ch for ch in text if not ch.isspace())


@metric("contains")
def contains(prediction: str, reference: str, **_) -> float:
    """1.0 when the reference string occurs in the prediction (passkey, needles, key-value retrieval)."""
    return float(reference in prediction)


@metric("qa_f1_score")
def qa_f1_score(prediction: str, reference: str, **_) -> float:
    """Word F1 after :func:`normalize_answer` (LongBench / SQuAD)."""
    return f1_score(normalize_answer(prediction).split(), normalize_answer(reference).split())


@metric("qa_f1_zh_score")
def qa_f1_zh_score(prediction: str, reference: str, **_) -> float:
    """Character F1 after :func:`normalize_zh_answer` (per-character tokens instead of jieba words)."""
    return f1_score(list(normalize_zh_answer(prediction)), list(normalize_zh_answer(reference)))


@metric("qa_f1_ja_score")
def qa_f1_ja_score(prediction: str, reference: str, **_) -> float:
    """ChouBun's Japanese QA F1, per character instead of fugashi words (same normalisation as Chinese)."""
    return qa_f1_zh_score(prediction, reference)


@metric("rouge_score")
def rouge_score(prediction: str, reference: str, **_) -> float:
    """ROUGE-L F with the ``rouge`` package's semantics (:func:`.rouge.rouge_l_f`)."""
    return rouge_l_f(prediction, reference)


@metric("rouge_zh_score")
def rouge_zh_score(prediction: str, reference: str, **_) -> float:
    """ROUGE-L F over characters (each non-space character a word, instead of jieba words)."""
    return rouge_l_f(_chars(prediction), _chars(reference))


@metric("rouge_ja_score")
def rouge_ja_score(prediction: str, reference: str, **_) -> float:
    """ChouBun's Japanese ROUGE-L F, per character instead of fugashi words."""
    return rouge_zh_score(prediction, reference)


@metric("classification_score")
def classification_score(prediction: str, reference: str, all_classes: Sequence[str] | None = None,
                         **_) -> float:
    """1/k when the reference is among the k class names found in the prediction, else 0 (LongBench).

    Class names that are strict substrings of the reference are dropped first, while iterating over the
    same list, so a name right after a dropped one is skipped: LongBench's quirk, kept for equal numbers.
    """
    if all_classes is None:
        raise ValueError("classification_score needs all_classes")
    matches = [name for name in all_classes if name in prediction]
    for term in matches:  # removing from the list being iterated is the published behaviour
        if term in reference and term != reference:
            matches.remove(term)
    return 1.0 / len(matches) if reference in matches else 0.0


def _fraction_equal(numbers: list[str], target: str) -> float:
    return 0.0 if not numbers else sum(n == target for n in numbers) / len(numbers)


def _paragraph_score(prediction: str, reference: str, label: str, name: str) -> float:
    found = re.findall(label + r"(\d+)", reference)
    if not found:
        raise ValueError(f"{name}: reference {reference!r} has no '{label}N'")
    return _fraction_equal(re.findall(r"\d+", prediction), found[0])


@metric("retrieval_score")
def retrieval_score(prediction: str, reference: str, **_) -> float:
    """Share of the numbers in the prediction equal to N of the reference ``"Paragraph N"`` (LongBench)."""
    return _paragraph_score(prediction, reference, "Paragraph ", "retrieval_score")


@metric("retrieval_zh_score")
def retrieval_zh_score(prediction: str, reference: str, **_) -> float:
    """As :func:`retrieval_score` for references ``"段落N"``."""
    return _paragraph_score(prediction, reference, "段落", "retrieval_zh_score")


@metric("count_score")
def count_score(prediction: str, reference: str, **_) -> float:
    """Share of the numbers in the prediction equal to the reference count (LongBench passage_count)."""
    return _fraction_equal(re.findall(r"\d+", prediction), str(reference))


@metric("code_sim_score")
def code_sim_score(prediction: str, reference: str, **_) -> float:
    """Edit similarity of the first prediction line without ``` ` ```, ``#`` or ``//`` to the reference line."""
    line = next((s for s in prediction.lstrip("\n").split("\n")
                 if "`" not in s and "#" not in s and "//" not in s), "")
    return fuzz_ratio(line, reference) / 100


@metric("fraction_present", per_reference=False)
def fraction_present(prediction: str, references: Sequence[str]) -> float:
    """Share of ``references`` found (case-insensitively) in the prediction: RULER's ``string_match_all``
    for one sample, used by variable tracking."""
    if not references:
        return 0.0
    low = prediction.lower()
    return sum(ref.lower() in low for ref in references) / len(references)
