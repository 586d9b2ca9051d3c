"""Bad input, fuzzed: NAMM checkpoints, task YAML files, JSONL records, sweep configs and CLI arguments.

Each property feeds generated (mostly broken) input to the public entry point and accepts exactly two
outcomes: the input is valid and loads, or the error is the documented kind (``ValueError`` /
``TaskDataError`` / ``FileNotFoundError``) and names the file, field or value at fault. Anything else — a
``TypeError`` from deep inside, an error that names nothing, a traceback from the CLI, a half-written
results file — fails the property. ``max_examples`` is bounded so the whole file runs in seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from namm_suite.cli import main
from namm_suite.namm import NUM_PARAMS, BamParams, NammHyperParams, load_namm, save_namm
from namm_suite.namm.params import PARAM_LAYOUT
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig
from namm_suite.tasks import TASKS, TaskContext, load_task_dir
from namm_suite.tasks.base import TaskDataError

from . import fake_sweep

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
JSON_SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(
    max_size=12)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=6)
TENSOR_NAMES = [name for name, _ in PARAM_LAYOUT] + ["mu", "var"]


@contextlib.contextmanager
def scratch():
    """A fresh folder per hypothesis example (pytest's tmp_path is per test, not per example)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def assert_named_error(err: BaseException, *names: str) -> None:
    assert isinstance(err, (ValueError, FileNotFoundError)), f"{type(err).__name__}: {err}"
    assert any(name in str(err) for name in names), f"error does not name {names}: {err}"


# ---------------------------------------------------------------------------------------- NAMM checkpoints


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory) -> tuple[bytes, str]:
    path = tmp_path_factory.mktemp("ckpt") / "namm"
    g = torch.Generator().manual_seed(0)
    save_namm(path, BamParams().from_vector(torch.randn(NUM_PARAMS, generator=g)), torch.randn(17, generator=g),
              torch.rand(17, generator=g) + 0.1, 1234, NammHyperParams(), {"generation": 3})
    return path.with_suffix(".safetensors").read_bytes(), path.with_suffix(".json").read_text()


def _write_pair(folder: Path, blob: bytes, sidecar: str | dict, resign: bool = False) -> Path:
    base = folder / "namm"
    base.with_suffix(".safetensors").write_bytes(blob)
    meta = sidecar if isinstance(sidecar, dict) else None
    if resign:  # keep the sidecar's sha256 in step so the tensor checks are reached
        meta = json.loads(sidecar) if meta is None else meta
        meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    base.with_suffix(".json").write_text(json.dumps(meta) if meta is not None else sidecar)
    return base


def _load_or_named_error(base: Path, *names: str) -> bool:
    """True when the checkpoint loads; otherwise the error must be a named ValueError/FileNotFoundError."""
    try:
        load_namm(base)
    except Exception as err:  # noqa: BLE001  (the property is about which exceptions escape)
        assert_named_error(err, *names)
        return False
    return True


@FUZZ
@given(cut=st.integers(0, 10**6), resign=st.booleans())
def test_truncated_tensor_file_is_refused(checkpoint_files, cut, resign):
    blob, sidecar = checkpoint_files
    with scratch() as folder:
        base = _write_pair(folder, blob[: cut % len(blob)], sidecar, resign)
        assert not _load_or_named_error(base, str(base.with_suffix(".safetensors")))


@FUZZ
@given(cut=st.integers(0, 10**6))
def test_truncated_sidecar_is_refused(checkpoint_files, cut):
    blob, sidecar = checkpoint_files
    with scratch() as folder:
        base = _write_pair(folder, blob, sidecar[: cut % len(sidecar.rstrip())])
        assert not _load_or_named_error(base, str(base.with_suffix(".json")))


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64]


@FUZZ
@given(name=st.sampled_from(TENSOR_NAMES), shape=st.lists(st.integers(0, 30), max_size=3),
       dtype=st.sampled_from(DTYPES), drop=st.booleans(), extra=st.booleans())
def test_wrong_tensor_shapes_dtypes_and_names_are_refused(checkpoint_files, name, shape, dtype, drop, extra):
    blob, sidecar = checkpoint_files
    tensors = dict(load_safetensors(blob))
    expected = tuple(tensors[name].shape)
    if drop:
        del tensors[name]
    else:
        tensors[name] = torch.zeros(shape, dtype=dtype)
    if extra:
        tensors["stray"] = torch.zeros(2)
    with scratch() as folder:
        base = _write_pair(folder, save_safetensors(tensors), sidecar, resign=True)
        loads = _load_or_named_error(base, f"'{name}'", "'stray'")
        assert loads == (not drop and not extra and tuple(shape) == expected and dtype == torch.float32)


@FUZZ
@given(name=st.sampled_from(TENSOR_NAMES), index=st.integers(0, 10**6),
       value=st.sampled_from([math.nan, math.inf, -math.inf, -1.0]))
def test_non_finite_or_negative_variance_tensors_are_refused(checkpoint_files, name, index, value):
    blob, sidecar = checkpoint_files
    tensors = dict(load_safetensors(blob))
    flat = tensors[name].reshape(-1).clone()
    flat[index % flat.numel()] = value
    tensors[name] = flat.reshape(tensors[name].shape)
    with scratch() as folder:
        base = _write_pair(folder, save_safetensors(tensors), sidecar, resign=True)
        loads = _load_or_named_error(base, f"'{name}'")
        assert loads == (value == -1.0 and name != "var")


SIDECAR_KEYS = ["format", "stats_count", "tensors_sha256", "provenance", "hparams"] + [
    f"hparams.{name}" for name in NammHyperParams.__dataclass_fields__]


@FUZZ
@given(key=st.sampled_from(SIDECAR_KEYS), value=JSON_VALUES, delete=st.booleans())
def test_mutated_sidecar_loads_or_is_named(checkpoint_files, key, value, delete):
    blob, sidecar = checkpoint_files
    meta = json.loads(sidecar)
    holder, field = (meta["hparams"], key.split(".")[1]) if "." in key else (meta, key)
    if delete:
        del holder[field]
    else:
        holder[field] = value
    with scratch() as folder:
        base = _write_pair(folder, blob, meta)
        if _load_or_named_error(base, str(base.with_suffix(".json")), str(base.with_suffix(".safetensors"))):
            loaded = load_namm(base)  # whatever loads is what the file says
            assert loaded.count == meta["stats_count"] and loaded.provenance == meta["provenance"]


def test_sidecar_of_another_save_is_refused(checkpoint_files, tmp_path):
    blob, _ = checkpoint_files
    save_namm(tmp_path / "other", BamParams(), torch.zeros(17), torch.ones(17), 1, NammHyperParams(), {})
    base = _write_pair(tmp_path, blob, (tmp_path / "other.json").read_text())
    with pytest.raises(ValueError, match=r"namm\.safetensors: contents do not match the sha256"):
        load_namm(base)


# ------------------------------------------------------------------------------------ task YAML and JSONL


@contextlib.contextmanager
def isolated_tasks():
    """Undo the registrations a fuzzed task file makes (the registry is global)."""
    saved = dict(TASKS._entries)
    try:
        yield
    finally:
        TASKS._entries.clear()
        TASKS._entries.update(saved)


GOOD_TASK = {"name": "fuzz_qa", "format": "longbench", "data_path": "data.jsonl", "metric": "qa_f1_score",
             "prompt": "{context}\nQ: {input}\nA:", "max_new_tokens": 8, "chat": True}
TASK_FIELDS = [*GOOD_TASK, "loader", "first_line", "description", "stray"]
GOOD_RECORD = {"context": "The sky is blue.", "input": "What colour is the sky?", "answers": ["blue"],
               "_id": "r1", "length": 5}
TEMPLATES = ["{context} {input}", "{input:d}", "{length:>{width}}", "{context!r}", "{input[0]}", "{}", "{input",
             "{0}", "{context:%}"]


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(TASK_FIELDS), JSON_VALUES | st.sampled_from(TEMPLATES),
                               max_size=3),
       drop=st.lists(st.sampled_from(list(GOOD_TASK)), max_size=2), raw=st.none() | st.text(max_size=40))
def test_fuzzed_task_yaml_registers_or_names_file_and_field(changes, drop, raw):
    with scratch() as folder, isolated_tasks():
        (folder / "data.jsonl").write_text(json.dumps(GOOD_RECORD) + "\n")
        doc = {k: v for k, v in {**GOOD_TASK, **changes}.items() if k not in drop}
        path = folder / "task.yaml"
        path.write_text(raw if raw is not None else yaml.safe_dump(doc))
        try:
            names = load_task_dir(path)
        except TaskDataError as err:
            assert str(path.resolve()) in str(err), err
            return
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"{type(err).__name__} escaped for {path.read_text()!r}: {err}")
        try:  # a task that registers must build its episodes or name the bad record
            TASKS.get(names[0])().episodes(TaskContext())
        except TaskDataError as err:
            assert str(folder.resolve()) in str(err) or "data_path" in str(err), err


RECORD_FIELDS = ["context", "input", "answers", "_id", "all_classes", "length", "language", "width"]


@FUZZ
@given(records=st.lists(
    st.dictionaries(st.sampled_from(RECORD_FIELDS), JSON_VALUES, max_size=6).map(lambda d: {**GOOD_RECORD, **d})
    | JSON_VALUES.map(json.dumps) | st.text(max_size=30), min_size=1, max_size=4),
       template=st.sampled_from(TEMPLATES[:4]), metric=st.sampled_from(["qa_f1_score", "classification_score"]))
def test_fuzzed_jsonl_records_give_episodes_or_name_file_line_and_field(records, template, metric):
    with scratch() as folder, isolated_tasks():
        data = folder / "data.jsonl"
        data.write_text("".join((r if isinstance(r, str) else json.dumps(r)).replace("\n", " ") + "\n"
                                for r in records))
        (folder / "task.yaml").write_text(yaml.safe_dump({**GOOD_TASK, "prompt": template, "metric": metric}))
        task = TASKS.get(load_task_dir(folder / "task.yaml")[0])()
        try:
            episodes = task.episodes(TaskContext())
        except TaskDataError as err:
            assert re.search(rf"{re.escape(str(data.resolve()))}:\d+: ", str(err)), err
            return
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"{type(err).__name__} escaped for {data.read_text()!r}: {err}")
        assert all(0.0 <= task.score(e.references[0], e) <= 1.0 for e in episodes)


# ------------------------------------------------------------------------------- sweep configs and the CLI

VALID_SWEEP = {"tasks": ["toy_echo"], "policies": ["full", "h2o"], "cache_sizes": [4], "seeds": [0], "limit": 2,
               "length": 64, "update_every": 16}
SWEEP_VALUES = {"tasks": st.lists(st.sampled_from(["toy_echo", "toy_ech", "", "passkey "]), max_size=2),
                "policies": st.lists(st.sampled_from(["full", "h2o", "h2", "FULL"]), max_size=2),
                "cache_sizes": st.lists(st.integers(-3, 12), max_size=3), "seeds": st.lists(st.integers(0, 3),
                max_size=2), "limit": st.none() | st.integers(-2, 3), "length": st.integers(-5, 64),
                "update_every": st.integers(-2, 64)}


@FUZZ
@given(fields=st.lists(st.sampled_from(list(SWEEP_VALUES)), min_size=1, max_size=2, unique=True), data=st.data())
def test_fuzzed_sweep_configs_are_valid_or_name_the_value(fields, data):
    kwargs = {**VALID_SWEEP, **{f: data.draw(SWEEP_VALUES[f], label=f) for f in fields}}
    try:
        SweepConfig(**kwargs)
    except (ValueError, KeyError) as err:
        text = str(err)
        values = [*kwargs["tasks"], *kwargs["policies"], *kwargs["cache_sizes"], *[kwargs[f] for f in fields]]
        assert any(repr(v) in text or str(v) in text for v in values if v != "") or "at least one" in text or \
            "''" in text, text
        return
    assert kwargs["tasks"] and kwargs["policies"] and kwargs["seeds"] and kwargs["length"] > 0
    assert kwargs["update_every"] > 0 and all(s > 0 for s in kwargs["cache_sizes"])
    assert (kwargs["limit"] is None or kwargs["limit"] > 0) and set(kwargs["tasks"]) == {"toy_echo"}
    assert set(kwargs["policies"]) <= {"full", "h2o"} and (kwargs["cache_sizes"] or "h2o" not in kwargs["policies"])


CLI_VALUES = {"--task": st.sampled_from(["toy_echo", "toy_ech", "toy_echo,passkeyy", ","]),
              "--policy": st.sampled_from(["full", "h2o", "full,tova", "nam", "h2o,", "namm", "full,namm"]),
              "--cache-size": st.sampled_from(["8", "0", "-4", "4,-1", "x", "8,16", ""]),
              "--seed": st.sampled_from(["0", "0,1", "a"]), "--limit": st.sampled_from(["2", "0", "-1", "1.5"]),
              "--update-every": st.sampled_from(["16", "0", "-16"]), "--length": st.sampled_from(["64", "0"]),
              "--namm-checkpoint": st.sampled_from(["none", "/nonexistent/namm"])}


@FUZZ
@given(args=st.fixed_dictionaries({}, optional=CLI_VALUES))
def test_fuzzed_namm_run_exits_cleanly(args, fake_adapter, capsys):
    assert fake_sweep.FakeAdapter  # registers toy_echo
    with scratch() as folder:
        out = folder / "r.jsonl"
        argv = ["run", "--out", str(out), *[x for kv in args.items() for x in kv]]
        if "--task" not in args:
            argv += ["--task", "toy_echo"]
        if "--policy" not in args:
            argv += ["--policy", "h2o"]
        try:
            code = main(argv)
        except SystemExit as exit_info:  # argparse: usage + one error line naming the option
            code = exit_info.code
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        if code == 0:
            assert out.read_bytes().count(b"\n") == len(read_rows(out)) > 0
            return
        assert code == 2, captured.err
        error_lines = [line for line in captured.err.splitlines() if "error:" in line]
        assert len(error_lines) == 1, captured.err
        assert not out.exists() or out.stat().st_size == 0  # no result before the error


@pytest.fixture
def fake_adapter(monkeypatch):
    """`namm run` sweeps toy_echo with the fake adapter (no model is loaded)."""
    monkeypatch.setattr("namm_suite.adapters.base.create_adapter", lambda name, model: fake_sweep.FakeAdapter())


def _good_results(folder: Path) -> Path:
    path = folder / "good.jsonl"
    row = {"task": "toy_echo", "model": "m", "policy": "full", "status": "ok", "score": 1.0, "mean_kept": 4.0}
    path.write_text(json.dumps(row) + "\n")
    return path


BAD_COMMANDS = {
    "report on an evolution log": (["report", "{folder}/log.jsonl", "--out", "{folder}/r.md"], "row 1 is not a sweep"),
    "report to an unwritable place": (["report", "{good}", "--out", "/proc/namm/r.md"], "/proc/namm"),
    "report on a corrupt file": (["report", "{folder}/corrupt.jsonl", "--out", "{folder}/r.md"], "corrupt.jsonl:1"),
    "evolve a missing config": (["evolve", "{folder}/nope.yaml", "--out", "{folder}/evo"], "nope.yaml"),
    "evolve a config with a typo": (["evolve", "{folder}/typo.yaml", "--out", "{folder}/evo"], "populaton"),
    "tasks from a non-task file": (["tasks", "--include-path", "{good}"], "good.jsonl:1: field 'name'"),
    "run into a file posing as a folder": (["run", "--task", "toy_echo", "--policy", "full", "--out",
                                            "{good}/r.jsonl"], "good.jsonl/r.jsonl cannot be written"),
    "run with an unknown adapter": (["run", "--task", "toy_echo", "--policy", "full", "--adapter", "audio",
                                     "--out", "{folder}/r.jsonl"], "audio"),
    "evolution report of nothing": (["evolution-report", "{folder}", "--out", "{folder}/e.md"], "log.jsonl"),
    "doctor skipping an unknown check": (["doctor", "--skip", "gpu"], "'gpu'"),
}


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_bad_commands_exit_2_with_one_named_error_line(case, tmp_path, capsys):
    argv, named = BAD_COMMANDS[case]
    (tmp_path / "log.jsonl").write_text('{"generation": 1, "fitness_best": 0.5}\n')
    (tmp_path / "corrupt.jsonl").write_text('{"task": \n{"task": "x"}\n')
    (tmp_path / "typo.yaml").write_text("stages: [{name: s, tasks: [passkey], generations: 2}]\npopulaton: 4\n")
    good = _good_results(tmp_path)
    argv = [a.format(folder=tmp_path, good=good) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"namm {argv[0]}: error: ") and named in err, err


EVOLUTION_YAML = {"stages": [{"name": "s", "tasks": ["passkey"], "generations": 2}], "population": 4,
                  "episodes_per_task": 2, "pool_size": 4, "update_every": 32, "length": 256, "seed": 1}
EVOLUTION_FIELDS = [*EVOLUTION_YAML, "sigma0", "eval_every", "workers", "backend", "selection", "cache_penalty",
                    "parents", "separable", "task_options", "populaton"]


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(EVOLUTION_FIELDS), JSON_VALUES | st.integers(-40, 80), min_size=1,
                               max_size=2), raw=st.none() | st.text(max_size=30))
def test_fuzzed_evolution_config_is_valid_or_names_file_and_field(changes, raw):
    from namm_suite.evolution import EvolutionConfig

    with scratch() as folder:
        path = folder / "evo.yaml"
        path.write_text(raw if raw is not None else yaml.safe_dump({**EVOLUTION_YAML, **changes}))
        try:
            config = EvolutionConfig.from_yaml(path)
        except ValueError as err:
            assert str(path) in str(err), err
            if raw is None:
                assert any(key in str(err) for key in changes) or "stage" in str(err), err
            return
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"{type(err).__name__} escaped for {path.read_text()!r}: {err}")
    assert config.population >= 2 and config.update_every > 0 and config.update_every % 16 == 0
    assert all(isinstance(t, str) for s in config.stages for t in s.tasks) and config.length > 0
    assert isinstance(config.seed, int) and isinstance(config.sigma0, (int, float)) and config.sigma0 > 0
