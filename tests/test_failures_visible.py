"""Every failure visible, every input named (issue 19): exit codes, one-line errors, failed episodes, two
writers on one results file, Ctrl-C, task options, portable keys and rows, progress without a terminal,
help texts and the report's figure (checked through matplotlib's objects)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from namm_suite import report as report_module
from namm_suite.adapters.base import Prediction
from namm_suite.cli import main
from namm_suite.report import write_report
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.shipped import SHIPPED_NAMM
from namm_suite.tasks.base import TASKS, Episode, Task, TaskContext, register_task

from . import fake_sweep
from .fake_sweep import FakeAdapter

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
RUN = ["run", "--task", "toy_echo", "--policy", "full,h2o", "--cache-size", "4", "--limit", "3"]

if "toy_options" not in TASKS:

    @register_task("toy_options")
    @dataclass
    class ToyOptionsTask(Task):
        """Echo episodes with a task option (``count``) for the --task-option tests."""

        count: int = 2
        metric = "contains"
        source = "generated in memory by the test"

        def __post_init__(self) -> None:
            if self.count < 1:
                raise ValueError(f"count must be >= 1, got {self.count}")

        def episodes(self, context: TaskContext) -> list[Episode]:
            return [Episode("toy_options", f"o{i}", {"prompt": str(i)}, (str(i),)) for i in range(self.count)]

        def score(self, prediction: str, episode: Episode) -> float:
            return float(episode.references[0] in prediction)


class FailingAdapter(FakeAdapter):
    """Fails every episode of the h2o policy (a bad setting the sweep cannot catch up front)."""

    def run(self, episode: Episode, manager) -> Prediction:
        if manager.policy.name == "h2o":
            raise RuntimeError("h2o broke\nacross two lines")
        return super().run(episode, manager)


@pytest.fixture
def adapter(monkeypatch):
    """`namm run` uses the adapter in ``holder[0]`` (the fake one unless a test swaps it)."""
    holder = [FakeAdapter()]
    monkeypatch.setattr("namm_suite.adapters.base.create_adapter", lambda name, model: holder[0])
    return holder


def one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"namm {command}: error: "), err
    return lines[0]


# ---- item 1: a sweep whose episodes fail exits 1 with the count and the log; errors not rerun -----------


def test_failed_episodes_exit_1_with_count_and_log_and_are_not_rerun(tmp_path, adapter, capsys):
    out = tmp_path / "r.jsonl"
    adapter[0] = FailingAdapter()
    assert main([*RUN, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failures = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 3 and "RuntimeError: h2o broke across two lines" in failures[0]
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("namm run: error: 3 of 6 episodes failed") and "r.errors.log" in summary
    log = (tmp_path / "r.errors.log").read_text()
    assert log.count("Traceback (most recent call last)") == 3 and "h2o broke" in log
    # a rerun appends nothing and still reports the failures; --retry-errors reruns them
    assert main([*RUN, "--out", str(out)]) == 1 and len(read_rows(out)) == 6
    adapter[0] = FakeAdapter()
    assert main([*RUN, "--out", str(out), "--retry-errors"]) == 0
    rows = read_rows(out)
    assert len(rows) == 9 and [r["status"] for r in rows[-3:]] == ["ok"] * 3
    capsys.readouterr()
    # the report counts each key once: the retried rows replace the error rows
    assert main(["report", str(out), "--out", str(tmp_path / "r.md")]) == 0
    assert "n=3" in (tmp_path / "r.md").read_text() and "Failed episodes" not in (tmp_path / "r.md").read_text()


def test_report_lists_failed_cells_and_exits_1_when_nothing_succeeded(tmp_path, adapter, capsys):
    out = tmp_path / "r.jsonl"
    adapter[0] = FailingAdapter()
    main(["run", "--task", "toy_echo", "--policy", "h2o", "--cache-size", "4", "--limit", "2", "--out", str(out)])
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "r.md")]) == 1
    one_error_line(capsys.readouterr().err.splitlines()[-1], "report")
    text = (tmp_path / "r.md").read_text()
    assert "## Failed episodes" in text and "| toy_echo | h2o | 4 | 2 | RuntimeError: h2o broke" in text


def test_namm_update_every_off_the_hop_is_refused_before_any_work(tmp_path, adapter, capsys):
    adapter[0] = None  # any adapter use would fail
    out = tmp_path / "r.jsonl"
    assert main(["run", "--task", "toy_echo", "--policy", "namm", "--update-every", "24", "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, "run")
    assert "multiple of 16" in line and "24" in line and not out.exists()


# ---- item 2: two sweeps on one results file (two real processes) ----------------------------------------


def test_second_sweep_on_the_same_file_exits_2_and_no_row_is_doubled(tmp_path):
    out = tmp_path / "shared.jsonl"
    command = [sys.executable, "-m", "tests.fake_sweep", str(out), "--cli"]
    first = subprocess.Popen(command, cwd=ROOT, env={**ENV, "FAKE_SWEEP_DELAY": "1.0"}, stderr=subprocess.PIPE,
                             text=True)  # 30 s: still running when the second has started and stopped
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or not out.read_bytes().count(b"\n")):
        time.sleep(0.01)
    second = subprocess.run(command, check=False, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first sweep must still hold the file"
    assert second.returncode == 2, second.stderr
    line = one_error_line(second.stderr, "run")
    assert f"being written by another sweep (pid {first.pid})" in line and "another --out" in line
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=60) == 130
    assert not (tmp_path / ".shared.jsonl.lock").exists()  # released and removed
    assert subprocess.run(command, check=False, cwd=ROOT, env=ENV, capture_output=True, timeout=120).returncode == 0
    rows = read_rows(out)
    assert len(rows) == 30 and len({r["key"] for r in rows}) == 30


def test_report_never_double_counts_a_key(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(tasks=["toy_echo"], policies=["full"], limit=3), out, adapter=FakeAdapter())
    out.write_bytes(out.read_bytes() * 2)  # a file written twice (e.g. before sweeps took the lock)
    write_report([out], tmp_path / "r.md")
    assert "n=3" in (tmp_path / "r.md").read_text()


# ---- item 4: Ctrl-C (SIGINT to a real process) -----------------------------------------------------------


def test_ctrl_c_exits_130_with_one_line_and_the_sweep_resumes(tmp_path):
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "tests.fake_sweep", str(out), "--cli"]
    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 3):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("namm run: interrupted"), err
    before = len(read_rows(out))
    assert 3 <= before < 30
    assert subprocess.run(command, check=False, cwd=ROOT, env=ENV, capture_output=True, timeout=120).returncode == 0
    rows = read_rows(out)
    assert len(rows) == 30 and len({r["key"] for r in rows}) == 30


# ---- items 3, 5, 7, 9, 10: bad input is one line and exit 2 ----------------------------------------------


def test_bad_generate_inputs_are_one_line_before_any_model_load(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("namm_suite.adapters.language.LanguageAdapter.from_pretrained", None)  # no model load
    latin = tmp_path / "latin.txt"
    latin.write_bytes("first line\nsecond: caf\xe9\n".encode("latin-1"))
    cases = [(["--no-chat", "--prompt", ""], "the prompt is empty"),
             (["--prompt-file", str(tmp_path)], "is a folder"),
             (["--prompt-file", str(latin)], f"{latin}:2: not UTF-8"),
             (["--policy", "namm", "--update-every", "24", "--prompt", "x"], "multiple of 16")]
    for argv, named in cases:
        assert main(["generate", *argv]) == 2, argv
        assert named in one_error_line(capsys.readouterr().err, "generate")


def test_empty_data_file_is_an_error_not_an_empty_success(tmp_path, adapter, capsys):
    (tmp_path / "data.jsonl").write_text("")
    (tmp_path / "task.yaml").write_text(json.dumps({"name": "empty_qa", "format": "longbench",
                                                    "data_path": "data.jsonl", "metric": "qa_f1_score",
                                                    "prompt": "{context} {input}", "max_new_tokens": 8,
                                                    "chat": True}))
    out = tmp_path / "r.jsonl"
    code = main(["run", "--task", "empty_qa", "--policy", "full", "--include-path", str(tmp_path), "--out", str(out)])
    assert code == 2
    line = one_error_line(capsys.readouterr().err, "run")
    assert "data.jsonl" in line and not out.exists()  # no 0-byte leftover either


@pytest.mark.parametrize(("argv", "named"), [
    (["--seed", "-1"], "seeds must be >= 0"),
    (["--cache-size", "12.5"], "--cache-size: '12.5' is not"),
    (["--limit", "1.5"], "expected a positive integer, got '1.5'"),
    (["--task-option", "colour=red"], "'colour'"),
    (["--task-option", "novalue"], "expected KEY=VALUE"),
])
def test_bad_run_arguments_exit_2_naming_the_value(argv, named, tmp_path, adapter, capsys):
    adapter[0] = None
    try:
        code = main([*RUN, "--out", str(tmp_path / "r.jsonl"), *argv])
    except SystemExit as exit_info:  # argparse's own errors: usage + one error line
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and named in err, err
    assert not (tmp_path / "r.jsonl").exists()


def test_task_of_another_modality_is_refused_before_any_episode(tmp_path, adapter, capsys):
    adapter[0].run = None
    assert main(["run", "--task", "hopper", "--policy", "full", "--out", str(tmp_path / "r.jsonl")]) == 2
    line = one_error_line(capsys.readouterr().err, "run")
    assert "'hopper' is a decision task" in line and "--adapter decision" in line


def test_version_and_help_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("namm ")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 1024)" in text and "(default: 64)" in text and "--task-option" in text


def test_tasks_listing_has_a_header_and_aligned_columns(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TASK", "MODALITY", "METRIC", "SOURCE"]
    column = lines[0].index("MODALITY")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[1:])


# ---- item 17: --task-option ------------------------------------------------------------------------------


def test_task_option_is_applied_validated_and_recorded(tmp_path, adapter, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--task", "toy_options", "--policy", "full", "--task-option", "count=3", "--out",
                 str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 3 and all(r["task_options"] == {"count": 3} for r in rows)
    capsys.readouterr()
    assert main(["run", "--task", "toy_options", "--policy", "full", "--task-option", "toy_options.count=0",
                 "--out", str(out)]) == 2
    assert "count must be >= 1, got 0" in one_error_line(capsys.readouterr().err, "run")


# ---- item 15: keys and rows without this machine's paths -------------------------------------------------


@pytest.mark.skipif(not SHIPPED_NAMM.with_suffix(".safetensors").exists(), reason="no shipped NAMM")
def test_rows_store_relative_checkpoints_and_keys_follow_the_content(tmp_path):
    copy = tmp_path / "elsewhere" / "namm"
    copy.parent.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(SHIPPED_NAMM.with_suffix(suffix), copy.with_suffix(suffix))
    keys = []
    for checkpoint, out in ((str(SHIPPED_NAMM), tmp_path / "a.jsonl"), (str(copy), tmp_path / "b.jsonl")):
        run_sweep(SweepConfig(tasks=["toy_echo"], policies=["namm"], limit=2, namm_checkpoint=checkpoint), out,
                  adapter=FakeAdapter(), console=Console(file=io.StringIO()))
        rows = read_rows(out)
        keys.append([r["key"] for r in rows])
    first = read_rows(tmp_path / "a.jsonl")[0]
    assert first["policy_options"]["checkpoint"] == f"checkpoints/{SHIPPED_NAMM.name}"
    assert first["config"]["namm_checkpoint"] == f"checkpoints/{SHIPPED_NAMM.name}"
    assert str(ROOT) not in (tmp_path / "a.jsonl").read_text()
    assert keys[0] == keys[1]  # same tensors, another folder: the same resume keys


# ---- item 12: progress without a terminal ----------------------------------------------------------------


def test_progress_without_a_terminal_is_one_line_per_episode_naming_the_cell(tmp_path):
    stream = io.StringIO()
    run_sweep(SweepConfig(tasks=["toy_echo"], policies=["full", "h2o"], cache_sizes=[8], limit=2),
              tmp_path / "r.jsonl", adapter=FakeAdapter(), console=Console(file=stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[1/4] toy_echo full seed 0 episode s0-0: contains 1.000")
    assert lines[1].startswith("[2/4] toy_echo h2o@8 seed 0 episode s0-0: ")


# ---- item 13: the report's figure, through matplotlib's objects ------------------------------------------


def test_report_figure_names_task_model_length_n_metric_and_keeps_the_legend_outside(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(report_module, "save_figure_atomic", lambda fig, path: figures.append(fig))
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(tasks=["toy_echo"], policies=["full", "h2o", "streaming", "tova"], cache_sizes=[4, 8],
                          limit=3, length=256), out, adapter=FakeAdapter(), console=Console(file=io.StringIO()))
    write_report([out], tmp_path / "r.md")
    (figure,) = figures
    ax = figure.axes[0]
    assert "toy_echo" in ax.get_title() and "smollm2-135m" in ax.get_title() and "n=3" in ax.get_title()
    assert "256 tokens" in ax.get_title()
    assert ax.get_ylabel().startswith("contains") and ax.get_xlabel() == "mean tokens kept per KV head"
    legend = ax.get_legend()
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[0].startswith("full") and {"h2o", "streaming", "tova"} <= set(labels)
    figure.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # outside the data
    colours = {container.get_label(): container.lines[0].get_color() for container in ax.containers}
    assert set(colours) == {"h2o", "streaming", "tova"} and len(set(map(str, colours.values()))) == 3


def test_fake_sweep_module_still_registers_the_toy_task():
    assert fake_sweep.FakeAdapter and "toy_echo" in TASKS


# ---- items 4 and 16: the lm-eval bridge's model_args, dt_meta.json -------------------------------------


def test_misspelled_lm_eval_model_arg_is_named_with_a_suggestion():
    from namm_suite.adapters.lm_eval_model import _check_hflm_arguments

    _check_hflm_arguments({"max_length": 512})  # an HFLM argument passes
    with pytest.raises(ValueError, match="unknown key 'update_evry'. Did you mean 'update_every'"):
        _check_hflm_arguments({"update_evry": 16})


@pytest.mark.parametrize(("text", "named"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"env_id": "Hopper-v5"}), "expected the fields env_id, state_mean"),
    (json.dumps({"env_id": "Hopper-v5", "state_mean": [0.0], "state_std": [1.0], "context_steps": 20,
                 "return_scale": 1000.0, "target_return": 3600.0, "provenance": {}, "extra": 1}), "'extra'"),
])
def test_bad_dt_meta_is_a_value_error_naming_the_file(tmp_path, text, named):
    from namm_suite.adapters.decision import DTMeta

    (tmp_path / "dt_meta.json").write_text(text)
    with pytest.raises(ValueError, match="dt_meta.json") as info:
        DTMeta.load(tmp_path)
    assert named in str(info.value)


# ---- items 3, 6, 18: the adapters guard an empty prompt and warn past the model's maximum positions -------


def position_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "namm_suite.adapters.base"]


def test_language_adapter_refuses_an_empty_prompt(tiny_checkpoint):
    from namm_suite.adapters.language import LanguageAdapter
    from namm_suite.manager import MemoryConfig, MemoryManager
    from namm_suite.policies import create_policy

    adapter = LanguageAdapter.from_pretrained(str(tiny_checkpoint))
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=16))
    for prompt, chat in (("", False), ("", True), (" \n", False)):
        with pytest.raises(ValueError, match="the prompt is empty"):
            adapter.generate(prompt, manager, max_new_tokens=1, chat=chat)


def test_prompt_past_the_models_maximum_positions_warns_once_with_counts(tiny_checkpoint, caplog):
    from namm_suite.adapters.language import LanguageAdapter
    from namm_suite.adapters.models import load_causal_lm
    from namm_suite.manager import MemoryConfig, MemoryManager
    from namm_suite.policies import create_policy

    model, tokenizer = load_causal_lm(str(tiny_checkpoint), attn_implementation="namm")
    model.config.max_position_embeddings = 24
    adapter = LanguageAdapter(model, tokenizer)
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=16))
    adapter.generate("one two three", manager, max_new_tokens=1, chat=False)
    assert position_warnings(caplog) == []  # within the limit: silent
    tokens = adapter.generate("word " * 40, manager, max_new_tokens=1, chat=False).extra["prompt_tokens"]
    (warning,) = position_warnings(caplog)
    assert tokens > 24 and "\n" not in warning
    assert f"prompt: {tokens} tokens, {tokens - 24} more than the model's maximum positions (24)" in warning
    adapter.generate("word " * 50, manager, max_new_tokens=1, chat=False)
    assert len(position_warnings(caplog)) == 1  # once per model, not once per episode


def test_video_tokens_past_the_models_maximum_positions_warn_with_counts(tmp_path, caplog):
    import torch

    from namm_suite.adapters.video import TinyVideoLM, VideoAdapter
    from namm_suite.adapters.video_model import TinyVideoLLM, TinyVideoLLMConfig, build_tokenizer
    from namm_suite.manager import MemoryConfig, MemoryManager
    from namm_suite.policies import create_policy
    from namm_suite.tasks.video.clips import VOCABULARY, clip_rng, make_clip
    from namm_suite.tasks.video.frames import write_video

    tokenizer = build_tokenizer(VOCABULARY)
    torch.manual_seed(0)
    config = TinyVideoLLMConfig(vocab_size=len(tokenizer), hidden_size=32, layers=2, heads=4, kv_heads=2,
                                intermediate_size=64, max_positions=32)
    adapter = VideoAdapter(TinyVideoLM(TinyVideoLLM(config, attn_implementation="namm"), tokenizer))
    clip = make_clip("needle", clip_rng(9, 0), 12, 32)
    video = write_video(tmp_path / "needle.mp4", clip.frames)
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=16))
    for frames, warned in ((4, 0), (12, 1)):  # 1 + 4·4 + 6 = 23 tokens, then 1 + 12·4 + 6 = 55
        episode = Episode("video_needle", "e0", {"video": str(video), "frames": frames,
                                                 "question": "what color was the shape ?"}, ("red",),
                          max_new_tokens=1)
        tokens = adapter.run(episode, manager).extra["prompt_tokens"]
        assert len(position_warnings(caplog)) == warned
    assert position_warnings(caplog)[0].startswith(
        f"visual + text tokens of 12 frames: {tokens} tokens, {tokens - 32} more than the model's maximum "
        "positions (32)")


# ---- items 9 and 16: model arguments that are files, missing paths, folders without a tokenizer ----------


def test_model_arguments_that_are_files_or_missing_paths_are_named(tmp_path, tiny_checkpoint, capsys):
    from namm_suite.adapters.decision import SHIPPED_DTS
    from namm_suite.adapters.models import EMBEDDED_MODELS, load_causal_lm, resolve_model
    from namm_suite.adapters.video import VIDEO_MODELS

    a_file = tmp_path / "weights.bin"
    a_file.write_text("x")
    for shipped in (EMBEDDED_MODELS, VIDEO_MODELS, SHIPPED_DTS):
        with pytest.raises(FileNotFoundError, match=f"{a_file} is a file; pass a model folder"):
            resolve_model(str(a_file), shipped)
        with pytest.raises(FileNotFoundError, match=f"no such model folder: {tmp_path / 'missing'}$"):
            resolve_model(str(tmp_path / "missing"), shipped)
        with pytest.raises(FileNotFoundError, match=f"{tmp_path} is not a Hugging Face checkpoint directory"):
            resolve_model(str(tmp_path), shipped)  # a folder without config.json
    with pytest.raises(ValueError, match="unknown embedded model 'smollm3'"):  # a bare name: the registry
        resolve_model("smollm3")
    assert main(["generate", "--model", str(a_file), "--prompt", "hi"]) == 2
    assert "is a file; pass a model folder (holding config.json) or a .gguf file" in one_error_line(
        capsys.readouterr().err, "generate")
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_checkpoint / name, no_tokenizer / name)
    with pytest.raises(FileNotFoundError, match=f"{no_tokenizer} has no usable tokenizer"):
        load_causal_lm(str(no_tokenizer))


# ---- item 7: data files that are not UTF-8 name the file and the line ------------------------------------


def test_non_utf8_data_files_name_the_file_and_line(tmp_path, adapter, capsys):
    from namm_suite.tasks.base import TaskDataError
    from namm_suite.tasks.sources import iter_jsonl, read_yaml
    from namm_suite.tasks.video.annotations import read_json_list

    good = json.dumps({"input": "q", "context": "c", "answers": ["a"]})
    (tmp_path / "task").mkdir()
    data = tmp_path / "task" / "data.jsonl"
    data.write_bytes(f"{good}\n\n".encode() + json.dumps({"input": "caf\xe9"}, ensure_ascii=False)
                     .encode("latin-1") + b"\n")
    with pytest.raises(TaskDataError, match=f"^{data}:3: not UTF-8 \\(byte 0xe9 at column 15\\)"):
        list(iter_jsonl(data))
    for path, reader, line in ((tmp_path / "t.yaml", read_yaml, 2), (tmp_path / "a.json", read_json_list, 1)):
        path.write_bytes(b"[\n" * (line - 1) + "\xe9".encode("latin-1"))
        with pytest.raises(TaskDataError, match=f"^{path}:{line}: not UTF-8"):
            reader(path)
    (data.parent / "task.yaml").write_text(json.dumps({"name": "latin_qa", "format": "longbench",
                                                      "data_path": "data.jsonl", "metric": "qa_f1_score",
                                                      "prompt": "{context} {input}", "max_new_tokens": 8}))
    assert main(["run", "--task", "latin_qa", "--policy", "full", "--include-path", str(data.parent), "--out",
                 str(tmp_path / "r.jsonl")]) == 2
    assert f"{data}:3: not UTF-8" in one_error_line(capsys.readouterr().err, "run")


# ---- item 9: a NAMM checkpoint given as a folder, an evolution folder that does not exist ----------------


@pytest.mark.skipif(not SHIPPED_NAMM.with_suffix(".safetensors").exists(), reason="no shipped NAMM")
def test_namm_checkpoint_folder_holding_one_checkpoint_is_accepted_else_named(tmp_path):
    from namm_suite.namm.checkpoint import load_namm
    from namm_suite.runner import checkpoint_digest

    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{folder} is a folder holding 0 NAMM checkpoints; pass"):
        load_namm(folder)
    for suffix in (".safetensors", ".json"):
        shutil.copy(SHIPPED_NAMM.with_suffix(suffix), (folder / "best").with_suffix(suffix))
    assert load_namm(folder).hparams == load_namm(SHIPPED_NAMM).hparams
    assert checkpoint_digest(str(folder)) == checkpoint_digest(str(SHIPPED_NAMM))
    for suffix in (".safetensors", ".json"):
        shutil.copy(SHIPPED_NAMM.with_suffix(suffix), (folder / "gen7").with_suffix(suffix))
    with pytest.raises(FileNotFoundError, match=r"holding 2 NAMM checkpoints \(best, gen7\).*run/NAME for NAME"):
        load_namm(folder)


def test_evolution_report_of_a_missing_folder_says_so(tmp_path, capsys):
    assert main(["evolution-report", str(tmp_path / "nope"), "--out", str(tmp_path / "e.md")]) == 2
    assert f"no such evolution folder: {tmp_path / 'nope'}" in one_error_line(capsys.readouterr().err,
                                                                               "evolution-report")


# ---- item 10: argument errors exit 2 at once, before torch or transformers is imported -------------------


@pytest.mark.parametrize("argv", [["run", "--task", "passkey", "--policy", "full", "--cache-size", "x"],
                                  ["demo", "--model", "language"], ["demo", "--model", "=path"]])
def test_argument_errors_exit_2_before_the_heavy_imports(argv):
    probe = ("import sys\nfrom namm_suite.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    code = e.code\nheavy = sorted({'torch', 'transformers'} & set(sys.modules))\n"
             "print(code, heavy, file=sys.stderr)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *argv], check=False, cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - start
    *message, verdict = done.stderr.strip().splitlines()
    assert verdict == "2 []", done.stderr  # exit 2, and neither torch nor transformers imported
    assert message[-1].startswith(f"namm {argv[0]}: error: argument "), done.stderr  # after argparse's usage
    assert seconds < 2.0, seconds


# ---- item 11: `namm doctor` creates no ./results/ ----------------------------------------------------------


def test_doctor_checks_the_results_folder_without_creating_it(tmp_path, monkeypatch):
    from namm_suite.doctor import CHECKS, run_checks

    monkeypatch.chdir(tmp_path)
    [result] = run_checks([c for c in CHECKS if c.name == "results folder"])
    assert result.status == "OK" and "does not exist yet" in result.detail and str(tmp_path) in result.detail
    assert list(tmp_path.iterdir()) == []  # no results/, no probe left behind
    (tmp_path / "results").mkdir()
    [result] = run_checks([c for c in CHECKS if c.name == "results folder"])
    assert result.status == "OK" and result.detail == f"{tmp_path / 'results'} is writable"
    assert list((tmp_path / "results").iterdir()) == []


# ---- item 13: the transfer figure, through matplotlib's objects -----------------------------------------


def test_transfer_figure_has_a_title_episode_counts_explained_markers_and_a_legible_legend(monkeypatch, tmp_path):
    from namm_suite import transfer_report
    from namm_suite.transfer_report import plot, summarise

    figures = []
    monkeypatch.setattr(transfer_report, "save_figure_atomic", lambda fig, path, **kw: figures.append(fig))
    rows = [{"task": task, "policy": policy, "cache_size": size, "score": score, "mean_kept": kept,
             "status": "ok", "metric": "accuracy", "adapter": "language", "policy_options": {}}
            for task in ("a", "b") for episode in range(3)
            for policy, size, score, kept in (("full", None, 1.0, 100), ("h2o", 16, 0.5, 16), ("h2o", 32, 0.75, 32),
                                              ("tova", 16, 0.25, 16))]
    rows += [rows[1] | {"task": "a"}]  # one more h2o@16 episode: its points rest on 7 episodes
    plot([summarise("language", rows, [16, 32]), summarise("video", rows[:12], [16, 32])], tmp_path / "t.png")
    (figure,) = figures
    assert "full cache" in figure._suptitle.get_text()
    language, video = figure.axes
    assert language.get_title() == "language: 2 tasks, n = 6-7 episodes per point"
    assert video.get_title() == "video: 1 task, n = 3 episodes per point"
    for ax in (language, video):
        assert ax.get_xlabel() == "mean tokens kept per KV head" and ax.get_ylabel() == "% of full-cache score"
    (legend,) = figure.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == ["full", "h2o", "tova", "at a fixed budget", "at its own cache size"]
    assert min(text.get_fontsize() for text in legend.get_texts()) >= 9
    figure.canvas.draw()
    assert legend.get_window_extent().x0 >= max(ax.get_window_extent().x1 for ax in figure.axes)


def test_scaling_figure_labels_both_axes_and_names_the_model_and_threads(monkeypatch, tmp_path):
    from benchmarks import scaling

    figures = []
    monkeypatch.setattr(scaling, "save_figure_atomic", lambda fig, path, **kw: figures.append(fig))
    rows = [scaling.ScaleRow(n, label, n / 1000 * (1 + (label == "namm")), n / 100) for n in (1024, 2048)
            for label in ("full", "namm")]
    scaling.plot(rows, tmp_path / "s.png", "smollm2-135m", 4)
    (figure,) = figures
    assert figure._suptitle.get_text() == "Scaling with context: smollm2-135m, 4 CPU threads"
    assert [ax.get_ylabel() for ax in figure.axes] == ["prefill seconds", "KV cache MiB"]
    assert all(ax.get_xlabel() == "context tokens" and ax.get_title() for ax in figure.axes)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["full cache", "NAMM (cap 25%)"]


# ---- item 14: user YAML tasks with a folder --data-path --------------------------------------------------


def test_user_task_with_a_folder_data_path_reads_its_data_file_key_or_names_the_file_looked_for(tmp_path,
                                                                                              adapter, capsys):
    tasks, data = tmp_path / "tasks", tmp_path / "data"
    tasks.mkdir()
    (data / "longbench").mkdir(parents=True)
    record = {"input": "which colour?", "context": "The sky is blue.", "answers": ["blue"]}
    (data / "longbench" / "colours.jsonl").write_text(json.dumps(record) + "\n")
    spec = {"format": "longbench", "metric": "qa_f1_score", "prompt": "{context} {input}", "max_new_tokens": 4}
    (tasks / "named.yaml").write_text(json.dumps({"name": "colours_named", "data_file": "colours.jsonl", **spec}))
    (tasks / "default.yaml").write_text(json.dumps({"name": "colours_default", **spec}))
    common = ["--policy", "full", "--include-path", str(tasks), "--data-path", str(data)]
    assert main(["run", "--task", "colours_named", *common, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert [r["status"] for r in read_rows(tmp_path / "a.jsonl")] == ["ok"]
    capsys.readouterr()
    assert main(["run", "--task", "colours_default", *common, "--out", str(tmp_path / "b.jsonl")]) == 2
    line = one_error_line(capsys.readouterr().err, "run")
    assert f"tried {data / 'colours_default.jsonl'}, {data / 'longbench' / 'colours_default.jsonl'}" in line


@pytest.mark.parametrize(("extra", "named"), [({"data_file": "sub/x.jsonl"}, "expected a file name"),
                                              ({"data_file": "x.jsonl", "data_path": "x.jsonl"}, "not both")])
def test_bad_data_file_keys_name_the_field(tmp_path, extra, named):
    from namm_suite.tasks.base import TaskDataError
    from namm_suite.tasks.language.yaml_tasks import load_task_file

    (tmp_path / "x.jsonl").write_text("{}\n")
    task = tmp_path / "t.yaml"
    task.write_text(json.dumps({"name": f"bad_{len(extra)}", "format": "longbench", "metric": "qa_f1_score",
                                "prompt": "{input}", "max_new_tokens": 4, **extra}))
    with pytest.raises(TaskDataError, match=f"t.yaml:1: field 'data_file': .*{named}"):
        load_task_file(task)


# ---- item 16: video files: no decoder noise, no decord internals, damaged cached clips regenerated --------


def test_damaged_videos_are_one_clean_line_and_the_decoder_prints_nothing(tmp_path, capfd):
    import numpy as np

    from namm_suite.tasks.base import TaskDataError
    from namm_suite.tasks.video.frames import encode_video, read_frames

    good = encode_video((np.random.default_rng(0).random((24, 32, 32, 3)) * 255).astype(np.uint8))
    middle = bytearray(good)
    middle[len(good) // 2:len(good) // 2 + 2000] = bytes(2000)
    damaged = {"truncated": good[:len(good) // 2], "junk": b"not a video" * 100, "zeroed": bytes(middle)}
    capfd.readouterr()
    for name, data in damaged.items():
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(data)
        with pytest.raises(TaskDataError) as info:
            read_frames(path, 24)
        message = str(info.value)
        assert message.startswith(f"{path}: field 'video': cannot ") and "\n" not in message
        assert ".cc:" not in message and "Check failed" not in message and message.count(str(path)) == 1
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # no ffmpeg or decord lines on the descriptors


def test_a_damaged_cached_synthetic_clip_is_regenerated(tmp_path):
    from namm_suite.tasks.base import TaskContext
    from namm_suite.tasks.video.frames import read_frames

    context = TaskContext(limit=2, data_path=tmp_path, options={"frames": 8})
    first = TASKS.get("video_needle")().episodes(context)
    path = Path(first[0].inputs["video"])
    intact = path.read_bytes()
    path.write_bytes(intact[:len(intact) // 3])  # a clip damaged after it was cached
    again = TASKS.get("video_needle")().episodes(context)
    assert again[0].inputs["video"] == str(path) and path.read_bytes() == intact
    assert read_frames(path, 8).shape == (8, 32, 32, 3)


def test_loading_a_decision_transformer_prints_no_token_id_warnings():
    probe = ("from namm_suite.adapters.decision import DecisionAdapter\n"
             "adapter = DecisionAdapter.from_pretrained('dt-hopper')\n"
             "assert adapter.model.config._attn_implementation == 'namm'\nprint('loaded')")
    done = subprocess.run([sys.executable, "-c", probe], check=False, cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "loaded", done.stderr
    assert "token_id" not in done.stderr, done.stderr


# ---- item 16: scripts/train_dt.py checks its data against --env before training, errors in one line ---------


def test_train_dt_checks_the_data_against_the_env_before_training(tmp_path):
    import h5py
    import numpy as np

    def d4rl(path, drop=None):
        rng = np.random.default_rng(0)
        arrays = {"observations": rng.standard_normal((10, 11)).astype(np.float32),
                  "actions": rng.uniform(-1, 1, (10, 3)).astype(np.float32), "rewards": np.ones(10, np.float32),
                  "terminals": np.arange(10) == 9, "timeouts": np.zeros(10, bool)}
        arrays.pop(drop, None)
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f[key] = value
        return path

    cases = [(d4rl(tmp_path / "hopper.hdf5"), "Walker2d-v5",
              "observations have 11 values and actions 3, but Walker2d-v5 has 17 and 6: pass the --env"),
             (d4rl(tmp_path / "broken.hdf5", drop="actions"), "Hopper-v5", "broken.hdf5: field 'actions': missing")]
    for data, env, named in cases:
        done = subprocess.run([sys.executable, "scripts/train_dt.py", "--data", str(data), "--env", env, "--out",
                               str(tmp_path / "out"), "--work", str(tmp_path / "work")], check=False, cwd=ROOT,
                              env=ENV, capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("train_dt.py: error: ") and named in lines[0], lines[0]
        assert not (tmp_path / "out").exists() and not (tmp_path / "work" / "train_state.pt").exists()
