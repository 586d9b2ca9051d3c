"""Loaders of LongBench(-E), InfiniteBench, ChouBun and user YAML tasks on tiny fixture files, and their
errors: file, line and field named."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from namm_suite.tasks import (
    TASKS,
    TaskContext,
    TaskDataError,
    UnknownTaskError,
    describe_tasks,
    load_task_dir,
)
from namm_suite.tasks.language.longbench import HERE
from namm_suite.tasks.sources import read_yaml

from .char_tokenizer import CharTokenizer

LONGBENCH = ["narrativeqa", "qasper", "multifieldqa_en", "multifieldqa_zh", "hotpotqa", "2wikimqa", "musique",
             "dureader", "gov_report", "qmsum", "multi_news", "vcsum", "trec", "triviaqa", "samsum", "lsht",
             "passage_count", "passage_retrieval_en", "passage_retrieval_zh", "lcc", "repobench-p"]
LONGBENCH_E = ["qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "gov_report", "multi_news", "trec", "triviaqa",
               "samsum", "passage_count", "passage_retrieval_en", "lcc", "repobench-p"]
# published config/dataset2maxlen.json and eval.py dataset2metric
MAXLEN = {"narrativeqa": 128, "qasper": 128, "multifieldqa_en": 64, "multifieldqa_zh": 64, "hotpotqa": 32,
          "2wikimqa": 32, "musique": 32, "dureader": 128, "gov_report": 512, "qmsum": 512, "multi_news": 512,
          "vcsum": 512, "trec": 64, "triviaqa": 32, "samsum": 128, "lsht": 64, "passage_count": 32,
          "passage_retrieval_en": 32, "passage_retrieval_zh": 32, "lcc": 64, "repobench-p": 64}
METRIC = {"narrativeqa": "qa_f1_score", "qasper": "qa_f1_score", "multifieldqa_en": "qa_f1_score",
          "multifieldqa_zh": "qa_f1_zh_score", "hotpotqa": "qa_f1_score", "2wikimqa": "qa_f1_score",
          "musique": "qa_f1_score", "dureader": "rouge_zh_score", "gov_report": "rouge_score",
          "qmsum": "rouge_score", "multi_news": "rouge_score", "vcsum": "rouge_zh_score",
          "trec": "classification_score", "triviaqa": "qa_f1_score", "samsum": "rouge_score",
          "lsht": "classification_score", "passage_retrieval_en": "retrieval_score", "passage_count": "count_score",
          "passage_retrieval_zh": "retrieval_zh_score", "lcc": "code_sim_score", "repobench-p": "code_sim_score"}

def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
                    encoding="utf-8")
    return path


def lb_record(i, **extra):
    return {"input": f"Question {i}?", "context": f"Context {i}.", "answers": [f"answer {i}"], "length": 1000 * i,
            "dataset": "qasper", "language": "en", "all_classes": None, "_id": f"id{i}", **extra}


def run(name, **context):
    return TASKS.get(name)().episodes(TaskContext(**context))


# ------------------------------------------------------------------------------------------------ LongBench
def test_longbench_declares_the_published_configuration():
    assert [n for n in TASKS.names() if n.startswith("longbench_") and not n.startswith("longbench_e_")] == sorted(
        f"longbench_{d}" for d in LONGBENCH)
    assert {n for n in TASKS.names() if n.startswith("longbench_e_")} == {f"longbench_e_{d}" for d in LONGBENCH_E}
    for dataset in LONGBENCH:
        spec = TASKS.get(f"longbench_{dataset}").spec
        assert (spec.max_new_tokens, spec.metric) == (MAXLEN[dataset], METRIC[dataset])
        assert spec.chat == (dataset not in ("trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"))
        assert spec.first_line == (dataset in ("trec", "triviaqa", "samsum", "lsht"))
    assert TASKS.get("longbench_lcc").spec.prompt == "Please complete the code given below. \n{context}Next line of code:\n"
    assert TASKS.get("longbench_passage_retrieval_zh").spec.prompt.endswith('"段落1"，"段落2"等格式\n\n答案是：')


def test_longbench_episodes_and_scores(tmp_path):
    write_jsonl(tmp_path / "qasper.jsonl", [lb_record(1), "", lb_record(2)])  # a blank line is skipped
    task = TASKS.get("longbench_qasper")()
    eps = task.episodes(TaskContext(data_path=tmp_path))
    assert [e.episode_id for e in eps] == ["id1", "id2"]
    ep = eps[0]
    assert ep.inputs["prompt"] == task.spec.prompt.format(context="Context 1.", input="Question 1?")
    assert ep.inputs["chat"] is True and ep.references == ("answer 1",) and ep.max_new_tokens == 128
    assert ep.metadata == {"dataset": "qasper", "line": 1, "length": 1000, "language": "en"}
    assert eps[1].metadata["line"] == 3
    assert task.score("The answer 1!", ep) == 1.0
    assert task.score("answer one", ep) == pytest.approx(0.5)  # P = 1/2, R = 1/2
    assert run("longbench_qasper", data_path=tmp_path / "qasper.jsonl", limit=1)[0].episode_id == "id1"


def test_longbench_first_line_classification_and_no_chat(tmp_path):
    classes = ["Location", "Number", "Person"]
    write_jsonl(tmp_path / "longbench" / "trec.jsonl",
                [{"input": "How far is it?", "context": "Q: Who? Type: Person", "answers": ["Number"],
                  "all_classes": classes, "_id": "t1"}])
    task = TASKS.get("longbench_trec")()
    ep = task.episodes(TaskContext(data_path=tmp_path))[0]  # found under <folder>/longbench/
    assert ep.inputs["chat"] is False and ep.scoring["all_classes"] == classes
    assert task.score("\nNumber\nPerson", ep) == 1.0  # only the first line counts
    assert task.score("Number Person", ep) == 0.5


def test_longbench_e_length_buckets(tmp_path):
    write_jsonl(tmp_path / "qasper_e.jsonl", [lb_record(1), lb_record(5), lb_record(9)])
    eps = run("longbench_e_qasper", data_path=tmp_path)
    assert [e.metadata["length_bucket"] for e in eps] == ["0-4k", "4-8k", "8k+"]


def test_middle_truncation_to_window_minus_answer_budget(tmp_path):
    context = "".join(chr(ord("a") + i % 26) for i in range(5000))
    write_jsonl(tmp_path / "hotpotqa.jsonl", [lb_record(1, context=context, input="Who?")])
    task = TASKS.get("longbench_hotpotqa")()
    full = task.spec.prompt.format(context=context, input="Who?")
    ep = task.episodes(TaskContext(tokenizer=CharTokenizer(), length=1032, data_path=tmp_path))[0]
    # budget = 1032 - 32 new tokens = 1000 characters: the first and the last 500 are kept
    assert ep.inputs["prompt"] == full[:500] + full[-500:]
    assert ep.metadata["truncated"] is True and ep.metadata["n_tokens"] == len(full)
    short = task.episodes(TaskContext(tokenizer=CharTokenizer(), length=len(full) + 32, data_path=tmp_path))[0]
    assert short.inputs["prompt"] == full and short.metadata["truncated"] is False
    with pytest.raises(ValueError, match="must exceed the answer budget"):
        task.episodes(TaskContext(tokenizer=CharTokenizer(), length=32, data_path=tmp_path))


def test_truncation_with_the_model_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    from namm_suite.adapters.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    write_jsonl(tmp_path / "narrativeqa.jsonl", [lb_record(1, context="The quick brown fox jumps. " * 400)])
    ep = run("longbench_narrativeqa", tokenizer=tok, length=628, data_path=tmp_path)[0]
    assert ep.metadata["truncated"] and abs(len(tok(ep.inputs["prompt"]).input_ids) - 500) <= 3
    assert ep.inputs["prompt"].startswith("You are given a story") and ep.inputs["prompt"].endswith("Answer:")


@pytest.mark.parametrize(("line", "pattern"), [
    ("{not json", r"qasper\.jsonl:2: malformed JSON"),
    ("[1, 2]", r"qasper\.jsonl:2: expected a JSON object, got list"),
    (json.dumps({"input": "q", "context": "c"}), r"qasper\.jsonl:2: field 'answers': is missing"),
    (json.dumps({"input": "q", "context": "c", "answers": "a"}), r"qasper\.jsonl:2: field 'answers': expected a list"),
    (json.dumps({"input": "q", "context": "c", "answers": []}), r"qasper\.jsonl:2: field 'answers': is an empty list"),
    (json.dumps({"input": "q", "answers": ["a"]}), r"qasper\.jsonl:2: field 'context': is missing \(the prompt"),
    (json.dumps({"input": "q", "context": "c", "answers": ["a"], "length": "long"}),
     r"qasper\.jsonl:2: field 'length': expected an integer, got str"),
])
def test_bad_longbench_lines_are_named(tmp_path, line, pattern):
    write_jsonl(tmp_path / "qasper.jsonl", [lb_record(1), line])
    with pytest.raises(TaskDataError, match=pattern):
        run("longbench_qasper", data_path=tmp_path)


def test_missing_data_and_fields_are_named(tmp_path):
    with pytest.raises(TaskDataError, match="set TaskContext.data_path"):
        run("longbench_qasper")
    with pytest.raises(TaskDataError, match=r"no data file; tried .*qasper\.jsonl, .*longbench/qasper\.jsonl"):
        run("longbench_qasper", data_path=tmp_path)
    with pytest.raises(TaskDataError, match="no such data file"):
        run("longbench_qasper", data_path=tmp_path / "nope.jsonl")
    write_jsonl(tmp_path / "trec.jsonl", [{"input": "q", "context": "c", "answers": ["Number"]}])
    with pytest.raises(TaskDataError, match=r"trec\.jsonl:1: field 'all_classes': is required"):
        run("longbench_trec", data_path=tmp_path)
    with pytest.raises(TaskDataError, match="field 'depths'.*valid options: none"):
        run("longbench_qasper", data_path=tmp_path, options={"depths": [0.5]})
    # options scoped to another task are ignored
    write_jsonl(tmp_path / "qasper.jsonl", [lb_record(1)])
    assert len(run("longbench_qasper", data_path=tmp_path, options={"passkey": {"depths": [0.5]}})) == 1


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(UnknownTaskError, match="unknown task 'pasky'. Did you mean 'passkey'.*Valid names: .*longbench_"):
        TASKS.get("pasky")
    with pytest.raises(TaskDataError):
        TASKS.get("nope")
    with pytest.raises(KeyError):  # also the registry's error type
        TASKS.get("nope")


# -------------------------------------------------------------------------------------------- InfiniteBench
def test_infinitebench_passkey_and_kv(tmp_path):
    write_jsonl(tmp_path / "passkey.jsonl", [{"id": 0, "context": "noise " * 10 + "The pass key is 71432.",
                                              "input": "What is the pass key?", "answer": ["71432"], "options": []}])
    key, value = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    write_jsonl(tmp_path / "kv_retrieval.jsonl", [{"id": 3, "context": json.dumps({key: value}),
                                                   "input": f'Key: "{key}"\nThe value associated with the specified key is: ',
                                                   "answer": value, "options": []}])
    task = TASKS.get("infinitebench_passkey")()
    ep = task.episodes(TaskContext(data_path=tmp_path))[0]
    assert ep.inputs["prompt"].startswith("There is an important info hidden inside a lot of irrelevant text.")
    assert ep.inputs["prompt"].endswith("The pass key is 71432.\n\nWhat is the pass key?")
    assert ep.episode_id == "0" and ep.max_new_tokens == 6 and ep.references == ("71432",)
    assert task.score("71432", ep) == 1.0 and task.score("The key: 7143", ep) == 0.0
    kv = TASKS.get("infinitebench_kv_retrieval")()
    ep = kv.episodes(TaskContext(data_path=tmp_path / "kv_retrieval.jsonl"))[0]
    assert ep.max_new_tokens == 50 and kv.score(f'"{value}"', ep) == 1.0


def test_infinitebench_choice_math_and_code(tmp_path):
    options = ["the butler", "the cook", "the gardener", "the driver"]
    write_jsonl(tmp_path / "longbook_choice_eng.jsonl", [{"id": 1, "context": "A long book.", "input": "Who did it?",
                                                          "answer": ["the gardener"], "options": options}])
    write_jsonl(tmp_path / "math_find.jsonl", [{"id": 2, "context": "[3, 9, 4]", "answer": [9], "options": [],
                                                "input": "You should answer with only one number, no other words. "
                                                         "The largest number of the list is: "}])
    write_jsonl(tmp_path / "code_run.jsonl", [{"id": 4, "context": "def func_12(x): ...", "answer": [-6],
                                               "options": [], "input": "What is func_12(-3)?"}])
    choice = TASKS.get("infinitebench_longbook_choice_eng")()
    ep = choice.episodes(TaskContext(data_path=tmp_path))[0]
    assert ep.scoring["labels"] == ["the gardener", "C"]
    assert "Question: Who did it?" in ep.inputs["prompt"] and ep.inputs["prompt"].endswith("D. the driver")
    assert choice.score("C", ep) == 1.0 and choice.score("B", ep) == 0.0
    math = TASKS.get("infinitebench_math_find")()
    ep = math.episodes(TaskContext(data_path=tmp_path))[0]
    assert ep.inputs["prompt"].startswith("What is the largest number in the following list?\n\n[3, 9, 4]")
    assert math.score("9", ep) == 1.0 and math.score("4", ep) == 0.0
    code = TASKS.get("infinitebench_code_run")()
    ep = code.episodes(TaskContext(data_path=tmp_path))[0]
    assert "function called named func_12." in ep.inputs["prompt"]
    assert "return value of func_12(-3)." in ep.inputs["prompt"] and code.score("The value is -6", ep) == 1.0


def test_bad_infinitebench_lines_are_named(tmp_path):
    write_jsonl(tmp_path / "longbook_choice_eng.jsonl", [{"id": 1, "context": "c", "input": "q", "answer": ["x"],
                                                          "options": ["a", "b", "c", "d"]}])
    with pytest.raises(TaskDataError, match=r"longbook_choice_eng\.jsonl:1: field 'answer': \['x'\] is not one"):
        run("infinitebench_longbook_choice_eng", data_path=tmp_path)
    write_jsonl(tmp_path / "math_find.jsonl", [{"id": 1, "context": "c", "input": "largest?", "answer": [1]}])
    with pytest.raises(TaskDataError, match=r"math_find\.jsonl:1: field 'input': has no 'The <target> of'"):
        run("infinitebench_math_find", data_path=tmp_path)
    write_jsonl(tmp_path / "passkey.jsonl", [{"id": 1, "context": "c", "input": "q"}])
    with pytest.raises(TaskDataError, match=r"passkey\.jsonl:1: field 'answer': is missing"):
        run("infinitebench_passkey", data_path=tmp_path)


# ------------------------------------------------------------------------------------------------- ChouBun
def test_choubun(tmp_path):
    write_jsonl(tmp_path / "wiki_qa.jsonl", [{"context": "東京は日本の首都です。", "input": "日本の首都は？",
                                              "answers": ["東京都"], "length": 12, "dataset": "wiki_qa",
                                              "language": "ja", "all_classes": None, "_id": "w1"}])
    task = TASKS.get("choubun_wiki_qa")()
    ep = task.episodes(TaskContext(data_path=tmp_path))[0]
    assert ep.inputs["prompt"].endswith("東京は日本の首都です。\n\n質問：日本の首都は？\n回答：")
    assert ep.episode_id == "w1" and task.metric == "qa_f1_ja_score"
    assert task.score("東京都です", ep) == pytest.approx(0.75)  # 3 shared characters: P = 3/5, R = 1
    assert {f"choubun_{d}" for d in ("wiki_qa", "edinet_qa", "corp_sec_qa", "corp_sec_sum")} <= set(TASKS.names())
    assert TASKS.get("choubun_corp_sec_sum").metric == "rouge_ja_score"


# ----------------------------------------------------------------------------------------------- user YAML
def user_task(tmp_path, stem, **fields):
    body = {"name": stem, "format": "longbench", "data_path": "data.jsonl", "metric": "qa_f1_score",
            "prompt": "Read: {context}\nQ: {input}\nA:", "max_new_tokens": 8, **fields}
    body = {key: value for key, value in body.items() if value is not None}  # None: leave the field out
    (tmp_path / f"{stem}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return tmp_path / f"{stem}.yaml"


def test_user_task_folder(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", [{"context": "Paris is in France.", "input": "Capital?", "answers": ["Paris"]}])
    write_jsonl(tmp_path / "ib.jsonl", [{"id": 7, "context": "x", "input": "y", "answer": 42}])
    name = f"my_qa_{uuid.uuid4().hex[:8]}"
    user_task(tmp_path, name, description="a tiny QA task", chat=False)
    (tmp_path / "sub").mkdir()
    user_task(tmp_path / "sub", name + "_ib", loader="infinitebench", format=None, data_path="../ib.jsonl",
              prompt="{context} {input}", metric="contains")
    assert load_task_dir(tmp_path) == [name, name + "_ib"]
    assert load_task_dir(tmp_path) == [name, name + "_ib"]  # loading the same files again is a no-op
    task = TASKS.get(name)()
    ep = task.episodes(TaskContext())[0]
    assert ep.inputs == {"prompt": "Read: Paris is in France.\nQ: Capital?\nA:", "chat": False,
                         "context": "Paris is in France.", "question": "Capital?", "cue": "A:"}
    assert ep.episode_id == "line1" and ep.max_new_tokens == 8 and task.score("Paris.", ep) == 1.0
    spec = next(s for s in describe_tasks() if s.name == name)
    assert (spec.metric, spec.description) == ("qa_f1_score", "a tiny QA task") and "data.jsonl" in spec.source
    ib = TASKS.get(name + "_ib")()
    ep = ib.episodes(TaskContext())[0]
    assert ep.references == ("42",) and ep.episode_id == "7" and ib.score("it is 42", ep) == 1.0


def test_user_task_errors_name_file_line_and_field(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", [{"context": "c", "input": "q", "answers": ["a"]}])
    name = f"bad_{uuid.uuid4().hex[:8]}"

    def fails(field, message, **fields):
        path = user_task(tmp_path, name, **fields)
        lines = path.read_text().splitlines()
        line = next((i + 1 for i, text in enumerate(lines) if text.startswith(f"{field}:")), 1)  # 1: missing
        with pytest.raises(TaskDataError, match=rf"{name}\.yaml:{line}: field '{field}': {message}"):
            load_task_dir(path)
        path.unlink()

    fails("metric", "unknown metric 'qa_f1'. Did you mean 'qa_f1_score'.*Valid names: .*rouge_score", metric="qa_f1")
    fails("metric", "is missing", metric=None)
    fails("max_new_tokens", "expected int, got str", max_new_tokens="many")
    fails("max_new_tokens", "must be >= 1, got 0", max_new_tokens=0)
    fails("format", "unknown format 'csv'", format="csv")
    fails("loader", "format 'longbench' and loader 'infinitebench' disagree", loader="infinitebench")
    fails("data_path", "no such data file", data_path="missing.jsonl")
    fails("temperature", "unknown field", temperature=0.5)
    fails("prompt", "malformed template", prompt="{context")
    fails("name", "must be letters, digits", name="my task")
    (tmp_path / "broken.yaml").write_text("name: x\nmetric: [qa_f1_score\nprompt: p\n")
    with pytest.raises(TaskDataError, match=r"broken\.yaml:\d+: malformed YAML"):
        load_task_dir(tmp_path / "broken.yaml")
    with pytest.raises(TaskDataError, match="no such task folder"):
        load_task_dir(tmp_path / "absent")
    # a user task may not take a registered name
    path = user_task(tmp_path, "passkey")
    with pytest.raises(TaskDataError, match=r"passkey\.yaml:1: field 'name': task 'passkey' is already registered"):
        load_task_dir(path)
    # a record without a field the user's prompt needs
    user_task(tmp_path, name, prompt="{context} {title}")
    load_task_dir(tmp_path / f"{name}.yaml")
    with pytest.raises(TaskDataError, match=r"data\.jsonl:1: field 'title': is missing \(the prompt template"):
        TASKS.get(name)().episodes(TaskContext())


def test_benchmark_yaml_files_parse_with_lines():
    doc = read_yaml(HERE / "longbench.yaml")
    assert doc.line("datasets", "qasper", "metric") > doc.line("datasets", "qasper") > doc.line("datasets")
    assert set(doc.data["datasets"]) == set(LONGBENCH)
