"""``--device`` and ``--dtype``: resolution, one-line refusals, and end to end on the CPU in fp32 and bf16."""

from __future__ import annotations

import json

import pytest
import torch

from namm_suite.cli import main
from namm_suite.device import placement, resolve_device, resolve_dtype

from .single_thread import one_torch_thread  # noqa: F401  (autouse)


def test_defaults_place_nothing_and_names_resolve():
    assert placement("cpu", "fp32") == {}
    assert placement("cpu", "bf16") == {"device": "cpu", "dtype": torch.bfloat16}
    assert resolve_dtype("fp16") == torch.float16
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(("device", "dtype", "field"), [("tpu", "fp32", "device"), ("cpu", "fp8", "dtype")])
def test_unknown_names_are_refused(device, dtype, field):
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        placement(device, dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine can place a model on cuda")
def test_cuda_without_cuda_is_one_line(capsys):
    assert main(["generate", "--device", "cuda", "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "device 'cuda' is not available" in err and "--device cpu" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_run_records_device_and_dtype_end_to_end(tiny_checkpoint, tmp_path, dtype):
    out = tmp_path / "rows.jsonl"
    args = ["run", "--model", str(tiny_checkpoint), "--task", "passkey", "--policy", "full,h2o", "--cache-size",
            "32", "--limit", "1", "--length", "200", "--update-every", "32", "--device", "cpu", "--dtype", dtype,
            "--out", str(out)]
    assert main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["policy"] for r in rows] == ["full", "h2o"]
    assert all(r["status"] == "ok" and r["device"] == "cpu" and r["dtype"] == dtype for r in rows)
    per_token = 2 * 2 * 8 * (2 if dtype == "bf16" else 4)  # keys + values, 2 KV heads, head dim 8
    full = rows[0]
    assert full["final_kv_bytes"] == 2 * full["final_kept"] * per_token  # 2 layers: the cache is in the dtype


def test_generate_runs_in_bf16(tiny_checkpoint, capsys):
    assert main(["generate", "--model", str(tiny_checkpoint), "--prompt", "hello there", "--max-new-tokens", "4",
                 "--device", "cpu", "--dtype", "bf16", "--policy", "tova", "--cache-size", "8",
                 "--update-every", "16"]) == 0
    assert "[tova]" in capsys.readouterr().err


def test_lm_eval_bridge_takes_the_same_device_and_dtype_names(tiny_checkpoint):
    from namm_suite.adapters.lm_eval_model import NammLM

    lm = NammLM(str(tiny_checkpoint), policy="full", device="cpu", dtype="bf16")
    assert lm.model.dtype == torch.bfloat16 and lm.device.type == "cpu"
    assert lm.model.config._attn_implementation == "namm"


def test_tokenizer_without_chat_template_warns_and_uses_plain_text(tiny_checkpoint, caplog):
    from namm_suite.adapters.language import LanguageAdapter
    from namm_suite.adapters.models import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_checkpoint), attn_implementation="namm")
    tokenizer.chat_template = None
    with caplog.at_level("WARNING"):
        adapter = LanguageAdapter(model, tokenizer)
    assert "no chat template; prompts are plain text" in caplog.text
    expected = tokenizer("What is 2+2?", return_tensors="pt").input_ids
    assert torch.equal(adapter.encode("What is 2+2?"), expected)
