"""Metrics of the long-context benchmarks: golden values worked out by hand, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namm_suite.tasks.language import infinitebench as ib
from namm_suite.tasks.language.metrics import (
    METRICS,
    best_score,
    classification_score,
    code_sim_score,
    count_score,
    fraction_present,
    fuzz_ratio,
    normalize_answer,
    qa_f1_ja_score,
    qa_f1_score,
    qa_f1_zh_score,
    retrieval_score,
    retrieval_zh_score,
    rouge_ja_score,
    rouge_score,
    rouge_zh_score,
)

LONGBENCH_METRICS = {"qa_f1_score", "qa_f1_zh_score", "rouge_score", "rouge_zh_score", "classification_score",
                     "retrieval_score", "retrieval_zh_score", "count_score", "code_sim_score"}


def test_every_published_metric_is_registered():
    assert LONGBENCH_METRICS | {"qa_f1_ja_score", "rouge_ja_score", "contains"} <= set(METRICS.names())
    with pytest.raises(KeyError, match="Did you mean 'qa_f1_score'"):
        METRICS.get("qa_f1_scor")


def test_qa_f1_golden():
    # "the eiffel tower paris" vs "eiffel tower" after normalisation: P = 2/3, R = 1, F1 = 0.8
    assert normalize_answer("The Eiffel Tower, Paris!") == "eiffel tower paris"
    assert qa_f1_score("The Eiffel Tower, Paris", "Eiffel Tower") == pytest.approx(0.8)
    # multisets: {red: 2, blue: 1} & {red: 1, blue: 2} share 2 of 3 tokens each way
    assert qa_f1_score("red red blue", "red blue blue") == pytest.approx(2 / 3)
    assert qa_f1_score("an apple", "the apple") == 1.0  # articles dropped
    assert qa_f1_score("", "anything") == 0.0


def test_qa_f1_zh_and_ja_are_per_character():
    # 北京大学 (4 characters, punctuation dropped) vs 北京 (2): P = 1/2, R = 1, F1 = 2/3
    assert qa_f1_zh_score("北京大学。", "北京") == pytest.approx(2 / 3)
    # 東京都です (5) vs 東京都 (3): P = 3/5, R = 1, F1 = 0.75
    assert qa_f1_ja_score("東京都です", "東京都") == pytest.approx(0.75)
    assert qa_f1_ja_score("「大阪」", "大阪") == 1.0


def test_rouge_l_golden():
    # one sentence each; LCS "the cat on the mat" -> word set {the, cat, on, mat} = 4 over 5 distinct
    # words on each side: P = R = 0.8 (the textbook ROUGE-L would give 5/6)
    assert rouge_score("the cat sat on the mat", "the cat is on the mat") == pytest.approx(0.8)
    # two sentences each: union of per-pair LCS words {the, dog, ran, cat, sat} = 5; R = 5/6, P = 5/5
    assert rouge_score("the cat sat. the dog ran", "the dog ran. a cat sat") == pytest.approx(10 / 11)
    # the package's tie-break picks "b" from ("a b", "b a"); with ("a", "b a") the union is {a, b}: F = 1
    assert rouge_score("b a", "a b. a") == pytest.approx(1.0)
    assert rouge_score("", "a reference") == 0.0
    assert rouge_score("...", "a reference") == 0.0  # no sentence at all, like the package's exception


def test_rouge_zh_and_ja_golden():
    # characters 我 爱 北 京 vs 我 爱 上 海: LCS {我, 爱}, P = R = 0.5
    assert rouge_zh_score("我爱北京", "我爱上海") == pytest.approx(0.5)
    assert rouge_ja_score("今日は 晴れ", "今日は晴れ") == pytest.approx(1.0)


def test_classification_score_golden_and_quirk():
    classes = ["Location", "Number", "Person"]
    assert classification_score("The answer is Number.", "Number", all_classes=classes) == 1.0
    assert classification_score("Number or Person", "Number", all_classes=classes) == 0.5
    assert classification_score("Location", "Number", all_classes=classes) == 0.0
    # LongBench removes "a" while iterating, so "ab" is skipped and stays: matches [ab, abc] -> 1/2
    assert classification_score("abc", "abc", all_classes=["a", "ab", "abc"]) == 0.5
    with pytest.raises(ValueError, match="all_classes"):
        classification_score("x", "y")


def test_retrieval_and_count_golden():
    assert retrieval_score("Paragraph 3", "Paragraph 3") == 1.0
    assert retrieval_score("Paragraph 3 or Paragraph 13", "Paragraph 3") == 0.5
    assert retrieval_score("no idea", "Paragraph 3") == 0.0
    assert retrieval_zh_score("答案是段落5", "段落5") == 1.0
    assert count_score("There are 12 unique paragraphs out of 30", "12") == 0.5
    assert count_score("twelve", "12") == 0.0


def test_code_sim_golden():
    # first line without ` # //: "x = 1"; difflib ratio 2*4/10 = 0.8
    assert code_sim_score("```python\nx = 1\n```", "x = 2") == pytest.approx(0.8)
    assert code_sim_score("# a comment\n// another", "x = 2") == 0.0
    assert fuzz_ratio("a", "a" + "x" * 15) == 12  # 100 * 2/16 = 12.5 rounds half to even, as fuzzywuzzy
    assert fuzz_ratio("", "") == 100 and fuzz_ratio("", "a") == 0


def test_best_score_is_max_over_references():
    assert best_score("qa_f1_score", "Eiffel Tower", ["Paris", "the Eiffel Tower"]) == 1.0
    assert best_score("qa_f1_score", "Eiffel Tower", []) == 0.0


def test_fraction_present():
    assert fraction_present("abcde, FGHIJ", ["ABCDE", "FGHIJ", "KLMNO", "PQRST"]) == 0.5
    assert fraction_present("", ["A"]) == 0.0


def test_infinitebench_scorers_golden():
    assert ib.score_first_int("The pass key is 71432.", ["71432"]) == 1.0
    assert ib.score_first_int("12 then 71432", ["71432"]) == 0.0
    assert ib.score_kv('The value is "abc-123".', ["abc-123"]) == 1.0
    assert ib.score_kv("abc-1234", ["abc-123"]) == 0.0
    assert ib.score_choice("B. the butler", ["the butler", "B"]) == 1.0
    assert ib.score_choice("The answer is: C", ["x", "C"]) == 1.0
    assert ib.score_choice("The answer is: C", ["x", "B"]) == 0.0
    assert ib.score_choice("I think B", ["x", "B"]) == 1.0
    assert ib.score_choice("", ["x", "B"]) == 0.0
    assert ib.score_code_debug("C. func_a", ["func_a", "C"]) == 1.0
    assert ib.score_code_debug("The answer is: func_a", ["func_a", "C"]) == 1.0
    assert ib.score_code_debug("answer: D", ["func_a", "C"]) == 0.0
    assert ib.score_name("It is JOHN.", ["JOHN"]) == 1.0
    assert ib.score_number("The answer is 42", [42]) == 1.0
    assert ib.score_number("3.5", [3.5]) == 1.0 and ib.score_number("3.5", [3]) == 0.0
    assert ib.score_code_run("The return value is: -5", [-5]) == 1.0
    assert ib.score_code_run("no number", [5]) == 0.0


def test_one_metric_registry_scores_every_task():
    """Every task that scores through the registry names a registered metric; per-episode metrics see the raw
    labels, per-reference ones the best reference (InfiniteBench QA = LongBench's F1, best over labels)."""
    from namm_suite.tasks import TASKS, Episode, Task
    from namm_suite.tasks.metrics import score_episode

    unscored = [name for name in TASKS.names()
                if TASKS.get(name).score is Task.score and TASKS.get(name).metric not in METRICS]
    assert not unscored
    assert TASKS.get("infinitebench_longbook_qa_eng").metric == "qa_f1_score"
    qa = Episode("t", "0", {}, ("nope", "Eiffel Tower"), scoring={"labels": ["nope", "Eiffel Tower"]})
    assert score_episode("qa_f1_score", "Eiffel Tower", qa) == 1.0
    number = Episode("t", "0", {}, ("3",), scoring={"labels": [3]})
    assert score_episode("number_match", "3.5", number) == 0.0 and score_episode("number_match", "3", number) == 1.0
    assert score_episode("accuracy", "(B) blue", Episode("t", "0", {}, ("B",), scoring={"all_classes": ["A", "B"]}))


texts = st.text(alphabet=st.sampled_from(list("abc xyz.,!北京")), max_size=40)


@settings(max_examples=150, deadline=None)
@given(texts, texts)
def test_metrics_stay_in_unit_interval(prediction, reference):
    for name in ("qa_f1_score", "qa_f1_zh_score", "rouge_score", "rouge_zh_score", "code_sim_score"):
        assert 0.0 <= METRICS.get(name)(prediction, reference) <= 1.0 + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta"]), min_size=1, max_size=12))
def test_identical_texts_score_one(words):
    text = " ".join(words)
    assert qa_f1_score(text, text) == 1.0
    assert rouge_score(text, text) == pytest.approx(1.0)
    assert qa_f1_score(text, "omega") == 0.0
