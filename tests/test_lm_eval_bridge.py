"""The lm-eval bridge: model ``namm`` on local YAML tasks (multiple choice and generate_until), offline.

A tiny random Llama (with the SmolLM2 tokenizer) is saved to a temporary folder; the same checkpoint is run
through lm-eval's plain ``hf`` model and through ``namm`` with several memory policies.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager

from namm_suite.adapters.language import LanguageAdapter
from namm_suite.adapters.lm_eval_model import NammLM, evaluate, main
from namm_suite.adapters.models import resolve_model

MC, GEN = "namm_toy_mc", "namm_toy_gen"
WORDS = ["memory", "cache", "token", "model", "river", "stone", "light", "window", "garden", "paper", "music",
         "cloud", "city"]


@pytest.fixture(scope="module")
def tiny_dir(tiny_checkpoint: Path) -> Path:
    """The shared tiny random Llama checkpoint (GQA 4/2 heads, SmolLM2 tokenizer; see conftest)."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL dataset and two task YAMLs: multiple choice (acc) and generate_until (exact_match).

    Stories are ~70 words (> 70 tokens), longer than the 16-token budget of the eviction tests; some
    choices span several tokens so that continuations cross memory updates too."""
    path = tmp_path_factory.mktemp("tasks")
    rng = torch.Generator().manual_seed(0)
    with open(path / "toy.jsonl", "w", encoding="utf-8") as out:
        for i in range(5):
            story = " ".join(WORDS[int(j)] for j in torch.randint(len(WORDS), (70,), generator=rng))
            choices = ["river", "stone light window garden paper music cloud", "city", "paper cloud"]
            out.write(json.dumps({"story": story, "question": f"What came after word {i}?",
                                  "choices": choices, "label": i % 4, "answer": "river"}) + "\n")
    common = f"""dataset_path: json
dataset_kwargs:
  data_files:
    test: {path / 'toy.jsonl'}
test_split: test
doc_to_text: "{{{{story}}}}\\nQuestion: {{{{question}}}}\\nAnswer:"
"""
    (path / "mc.yaml").write_text(f"""task: {MC}
{common}output_type: multiple_choice
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""")
    (path / "gen.yaml").write_text(f"""task: {GEN}
{common}output_type: generate_until
doc_to_target: answer
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""")
    return path


def run(task_dir: Path, model: str, model_args: str, tasks: tuple[str, ...] = (MC, GEN)) -> dict:
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    return simple_evaluate(model=model, model_args=model_args, tasks=list(tasks), task_manager=manager,
                           log_samples=True, bootstrap_iters=0)


def loglikelihoods(results: dict) -> torch.Tensor:
    """Every (document, choice) log-likelihood of the multiple-choice task, in document order."""
    samples = sorted(results["samples"][MC], key=lambda s: s["doc_id"])
    return torch.tensor([resp[0][0] for s in samples for resp in s["resps"]], dtype=torch.float64)


def generations(results: dict) -> list[str]:
    return [s["resps"][0][0] for s in sorted(results["samples"][GEN], key=lambda s: s["doc_id"])]


@pytest.fixture(scope="module")
def plain(tiny_dir: Path, task_dir: Path) -> dict:
    return run(task_dir, "hf", f"pretrained={tiny_dir},device=cpu,dtype=float32")


def test_namm_is_a_registered_lm_eval_model():
    assert get_model("namm") is NammLM


@pytest.mark.parametrize("args, message", [
    ("policy=h2", "Did you mean 'h2o'"),
    ("policy=nope", "Valid names: full, h2o, keynorm, namm"),
    ("policy=h2o", "needs cache_size"),
    ("policy=h2o,cache_size=0", "cache_size must be a positive integer"),
    ("policy=snapkv,cache_size=64,update_every=-16", "update_every must be a positive integer"),
    ("policy=full,batch_size=4", "batch_size must be 1"),
    ("policy=h2o,cache_size=8,selection=threshold", "only apply to policy=namm"),
])
def test_bad_model_args_fail_before_loading(args: str, message: str):
    with pytest.raises(ValueError, match=message):
        NammLM.create_from_arg_string(f"pretrained=/nonexistent,{args}")


def test_full_policy_equals_plain_hflm(plain: dict, tiny_dir: Path, task_dir: Path):
    results = run(task_dir, "namm", f"pretrained={tiny_dir},dtype=float32,update_every=16")
    assert "acc,none" in results["results"][MC] and "exact_match,none" in results["results"][GEN]
    assert results["results"][MC]["acc,none"] == plain["results"][MC]["acc,none"]
    ours, reference = loglikelihoods(results), loglikelihoods(plain)
    assert ours.shape == reference.shape == (20,)
    assert (ours - reference).abs().max().item() <= 1e-4
    assert generations(results) == generations(plain)  # greedy under the manager = HF generate
    memory = results["config"]["namm_memory"]
    assert memory["n_updates"] > 0 and memory["sequences"] > 0  # updates ran, but full evicts nothing
    assert results["config"]["namm_memory_args"]["policy"] == "full"


@pytest.mark.parametrize("policy", ["h2o", "streaming"])
def test_small_cache_evicts_and_changes_loglikelihoods(plain: dict, tiny_dir: Path, task_dir: Path,
                                                       policy: str):
    results = run(task_dir, "namm", f"pretrained={tiny_dir},policy={policy},cache_size=16,update_every=16")
    assert {"acc,none", "exact_match,none"} <= set(results["results"][MC]) | set(results["results"][GEN])
    memory = results["config"]["namm_memory"]
    assert memory["n_updates"] >= memory["sequences"] * 4  # contexts of 70+ tokens, an update every 16
    assert memory["peak_kept"] <= 16 + 16  # budget + one schedule period of new tokens
    assert memory["tokens_seen"] / memory["sequences"] > 70
    difference = (loglikelihoods(results) - loglikelihoods(plain)).abs()
    assert difference.max().item() > 1e-3


def test_scoring_equals_token_by_token_decoding_under_eviction(tiny_dir: Path):
    """Chunked scoring of context + continuation evicts exactly where decoding one token at a time would."""
    lm = NammLM(str(tiny_dir), policy="h2o", cache_size=16, update_every=16, dtype="float32")
    context = " ".join(WORDS * 8) + "\nAnswer:"
    continuation = " stone light window garden paper music cloud river"
    [(score, _)] = lm.loglikelihood([Instance("loglikelihood", {}, (context, continuation), 0)])
    ctx, cont = lm._encode_pair(context, continuation)
    assert len(ctx) > 6 * 16 and len(cont) > 5
    manager = lm.memory.build_manager()
    manager.new_cache()
    with torch.no_grad():
        logits = manager.forward(lm.model, torch.tensor([ctx]))
        expected = 0.0
        for token in cont:
            expected += torch.log_softmax(logits[0].double(), -1)[token].item()
            logits = manager.forward(lm.model, torch.tensor([[token]]))
    assert manager.stats().n_updates >= 6
    assert abs(score - expected) <= 1e-4


def test_generate_until_honours_stop_strings_and_max_gen_toks(tiny_dir: Path):
    lm = NammLM(str(tiny_dir), policy="h2o", cache_size=16, update_every=16, dtype="float32")
    context = " ".join(WORDS * 3)
    n_context = len(lm.tok_encode(context))

    def generate(**gen_kwargs) -> tuple[str, int]:
        [text] = lm.generate_until([Instance("generate_until", {}, (context, gen_kwargs), 0)])
        return text, lm.memory_log[-1].tokens_seen - n_context + 1  # the last token is never fed back

    free, n_free = generate(until=[], max_gen_toks=6)
    assert n_free == 6
    stop = free.split()[2]
    stopped, n_stopped = generate(until=[stop], max_gen_toks=6)
    assert stopped == free[: free.index(stop)] and n_stopped < 6
    assert generate(until=[], max_gen_toks=2)[1] == 2


@pytest.mark.parametrize("policy, cache_size", [("full", None), ("h2o", 16), ("streaming", 24)])
def test_generation_equals_the_language_adapter(tiny_dir: Path, policy: str, cache_size: int | None):
    """generate_until decodes as the language adapter does: same tokens, same memory under the same schedule."""
    lm = NammLM(str(tiny_dir), policy=policy, cache_size=cache_size, update_every=16, dtype="float32")
    adapter = LanguageAdapter.from_pretrained(str(tiny_dir))
    for n_words, max_gen_toks in ((7, 12), (40, 9), (90, 20)):
        context = " ".join(WORDS[i % len(WORDS)] for i in range(3 * n_words, 4 * n_words))
        [text] = lm.generate_until([Instance("generate_until", {}, (context, {"until": [],
                                                                             "max_gen_toks": max_gen_toks}), 0)])
        ids = lm.tok_batch_encode([context])[0]
        expected = adapter.generate(ids, lm.memory.build_manager(), max_new_tokens=max_gen_toks)
        assert text.strip() == expected.output
        got, want = lm.memory_log[-1], expected.stats
        assert (got.tokens_seen, got.n_updates, got.mean_kept) == (want.tokens_seen, want.n_updates, want.mean_kept)
    assert want.n_updates > 0 and (policy == "full" or want.final_kept < want.tokens_seen)


def test_evaluate_entry_point(tiny_dir: Path, task_dir: Path):
    results = evaluate(f"pretrained={tiny_dir},policy=keynorm,cache_size=16,update_every=16", [MC, GEN],
                       str(task_dir), limit=2, include_defaults=False, bootstrap_iters=0)
    assert results["results"][MC]["sample_len"] == 2 and "exact_match,none" in results["results"][GEN]
    assert results["config"]["namm_memory"]["n_updates"] > 0


def test_lm_eval_command_line(tiny_dir: Path, task_dir: Path, tmp_path: Path, monkeypatch):
    """``main`` is lm-eval's own CLI with ``namm`` registered (what ``namm-lm-eval`` runs)."""
    monkeypatch.setattr(sys, "argv", [
        "namm-lm-eval", "--model", "namm", "--model_args",
        f"pretrained={tiny_dir},policy=h2o,cache_size=16,update_every=16", "--tasks", MC,
        "--include_path", str(task_dir), "--limit", "2", "--device", "cpu", "--output_path", str(tmp_path)])
    main()
    [written] = tmp_path.rglob("results_*.json")
    results = json.loads(written.read_text())
    assert "acc,none" in results["results"][MC]
    assert results["config"]["namm_memory_args"] == {"policy": "h2o", "cache_size": 16, "update_every": 16,
                                                     "namm_checkpoint": None, "selection": "kappa"}


@pytest.mark.slow
def test_smollm2_on_local_tasks(task_dir: Path):
    """The real SmolLM2-135M by its embedded name: full cache equals plain HFLM, a small cache evicts."""
    path = resolve_model("smollm2-135m")
    plain = run(task_dir, "hf", f"pretrained={path},device=cpu,dtype=float32", tasks=(MC,))
    full = run(task_dir, "namm", "pretrained=smollm2-135m,dtype=float32", tasks=(MC,))
    small = run(task_dir, "namm", "pretrained=smollm2-135m,policy=h2o,cache_size=32,update_every=32")
    assert (loglikelihoods(full) - loglikelihoods(plain)).abs().max().item() <= 1e-4
    assert (loglikelihoods(small) - loglikelihoods(plain)).abs().max().item() > 1e-3
    assert "exact_match,none" in small["results"][GEN]
    assert small["config"]["namm_memory"]["n_updates"] > 0
