"""ROUGE-L F as LongBench computes it: a re-implementation of ``Rouge().get_scores(...)["rouge-l"]["f"]``
from the ``rouge`` package (pltrdy/rouge 1.0.1, ``rouge_l_summary_level``), which LongBench's
``rouge_score`` calls. It is not the textbook ROUGE-L, and the differences are kept on purpose:

- sentences are the pieces of the text split on ``"."`` (empty pieces dropped, whitespace collapsed);
  words are the pieces of a sentence split on single spaces; no lower-casing, no stemming;
- for each reference sentence and each hypothesis sentence one LCS is reconstructed (ties broken as in
  the package); the *set* of words in these LCSs, unioned over all sentence pairs, counts the overlap;
- recall = overlap / number of distinct reference words, precision = overlap / number of distinct
  hypothesis words, F = 2PR / (P + R + 1e-8);
- an empty hypothesis or reference (no sentence) scores 0.0, as LongBench's ``except: return 0.0`` does.

One quirk is *not* reproduced: the package reconstructs the LCS recursively, so a sentence pair longer than
about 1000 words in total hits Python's recursion limit and LongBench silently scores 0; here the LCS is
iterative and such pairs get their real score.
"""

from __future__ import annotations

from collections.abc import Sequence


def _sentences(text: str) -> list[str]:
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def _lcs_words(x: Sequence[str], y: Sequence[str]) -> list[str]:
    """One longest common subsequence of ``x`` (reference) and ``y`` (hypothesis), as the package
    reconstructs it: walk back from the end, move up when ``table[i-1][j] > table[i][j-1]``, else left."""
    n, m = len(x), len(y)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, prev, xi = table[i], table[i - 1], x[i - 1]
        for j in range(1, m + 1):
            row[j] = prev[j - 1] + 1 if xi == y[j - 1] else max(prev[j], row[j - 1])
    out: list[str] = []
    i, j = n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            out.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out[::-1]


def rouge_l_f(hypothesis: str, reference: str) -> float:
    """ROUGE-L F in [0, 1] of ``hypothesis`` against ``reference`` with the ``rouge`` package's semantics."""
    hyp, ref = _sentences(hypothesis), _sentences(reference)
    if not hyp or not ref:
        return 0.0
    hyp_words = [w for s in hyp for w in s.split(" ")]
    ref_words = [w for s in ref for w in s.split(" ")]
    union: set[str] = set()
    for ref_sentence in ref:
        ref_split = ref_sentence.split(" ")
        for hyp_sentence in hyp:
            union.update(_lcs_words(ref_split, hyp_sentence.split(" ")))
    recall = len(union) / len(set(ref_words))
    precision = len(union) / len(set(hyp_words))
    return 2.0 * precision * recall / (precision + recall + 1e-8)
