"""The video adapter on both model paths: the tiny timm+Llama composite and a Hugging Face LlavaNextVideo.

Checks: visual tokens enter the ragged cache through the namm hook and the full-cache policy reproduces the
plain model's logits (eager attention, one-shot forward; for LlavaNextVideo with the model's own
``input_ids`` + ``pixel_values_videos`` merge); the budgeted policies evict visual tokens down to their
budget; a sweep over a loader with a missing video and a bad record records error rows and goes on.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from namm_suite.adapters.base import create_adapter
from namm_suite.adapters.models import resolve_model
from namm_suite.adapters.video import VIDEO_MODELS, LlavaNextVideoLM, VideoAdapter, load_video_lm
from namm_suite.adapters.video_model import TinyVideoLLM, TinyVideoLLMConfig, build_tokenizer
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import POLICIES, create_policy
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.shipped import SHIPPED_NAMM
from namm_suite.tasks import Episode
from namm_suite.tasks.video.clips import VOCABULARY, clip_rng, make_clip
from namm_suite.tasks.video.frames import write_video

from .single_thread import one_torch_thread  # noqa: F401  (autouse)

MARGIN = {"video_needle": 0.2, "video_count": 0.4, "video_order": 0.35}  # validation: 0.65, 0.91, 1.0
BUDGETED = [name for name in POLICIES.names() if POLICIES.get(name).uses_budget]
QUESTION = "what color was the shape ?"


@pytest.fixture(scope="module")
def tiny_composite(tmp_path_factory):
    """A random 2-layer tiny video-LLM checkpoint folder (4 visual tokens per frame)."""
    path = tmp_path_factory.mktemp("tiny_video_llm")
    tokenizer = build_tokenizer(VOCABULARY)
    torch.manual_seed(0)
    config = TinyVideoLLMConfig(vocab_size=len(tokenizer), hidden_size=32, layers=2, heads=4, kv_heads=2,
                                intermediate_size=64)
    TinyVideoLLM(config).save(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    """A random LlavaNextVideo checkpoint (tiny CLIP tower, tiny Llama) with tokenizer and video processor."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
    )
    from transformers.models.llava_next_video import LlavaNextVideoVideoProcessor

    path = tmp_path_factory.mktemp("tiny_llava_next_video")
    tokenizer = build_tokenizer(VOCABULARY + ["user", "assistant"])
    vocab = len(tokenizer) + 2  # the image and video placeholder ids follow the words
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       bos_token_id=2, eos_token_id=3, pad_token_id=0)
    config = LlavaNextVideoConfig(vision_config=vision, text_config=text, image_token_index=vocab - 2,
                                  video_token_index=vocab - 1, vision_feature_layer=-1, image_grid_pinpoints=[[32, 32]])
    torch.manual_seed(0)
    LlavaNextVideoForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    LlavaNextVideoVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def composite_lm(tiny_composite):
    return load_video_lm(str(tiny_composite))


@pytest.fixture(scope="module")
def llava_lm(tiny_llava):
    return load_video_lm(str(tiny_llava))


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    clip = make_clip("needle", clip_rng(9, 0), 24, 32)
    return write_video(tmp_path_factory.mktemp("clips") / "needle.mp4", clip.frames), clip


def prefill(video_lm, frames, manager):
    manager.new_cache()
    return manager.forward(video_lm.lm, inputs_embeds=video_lm.prompt_embeds(frames, QUESTION))


def held_visual(manager, first: int, last: int) -> float:
    """Mean number of cached tokens per KV head whose position is a visual token's (in [first, last))."""
    layer = manager.cache.layers[0]
    visual = layer.valid & (layer.positions >= first) & (layer.positions < last)
    return float(visual.sum(-1).float().mean())


# ---- tiny composite --------------------------------------------------------------------------------------
def test_composite_full_cache_reproduces_the_plain_model(tiny_composite, composite_lm, clip_file):
    _, clip = clip_file
    video_lm = composite_lm
    reference = TinyVideoLLM.load(tiny_composite, attn_implementation="eager")
    embeds = video_lm.prompt_embeds(clip.frames, QUESTION)
    assert embeds.shape[1] == 1 + 24 * 4 + len(QUESTION.split())
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=16))
    logits = prefill(video_lm, clip.frames, manager)
    with torch.no_grad():
        expected = reference.lm(inputs_embeds=embeds).logits[:, -1]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert manager.stats().final_kept == embeds.shape[1]


@pytest.mark.parametrize("policy", BUDGETED)
def test_composite_visual_tokens_are_evicted_to_the_budget(composite_lm, clip_file, policy):
    _, clip = clip_file
    video_lm = composite_lm
    options = {"seed": 0} if policy == "random" else {}
    manager = MemoryManager(create_policy(policy, **options), MemoryConfig(update_every=16, budget=12))
    prefill(video_lm, clip.frames, manager)
    stats = manager.stats()
    total = 1 + 24 * 4 + len(QUESTION.split())  # 103 tokens: updates after 16, 32, ..., 96
    assert stats.n_updates == 6 and stats.tokens_seen == total
    assert stats.final_kept <= 12 + total - 96
    assert held_visual(manager, 1, 96) <= 12  # visual tokens at positions 1-96; 96 came after the last update


def test_composite_with_the_shipped_namm_zero_shot(composite_lm, clip_file):
    _, clip = clip_file
    video_lm = composite_lm
    own = MemoryManager(create_policy("namm", checkpoint=str(SHIPPED_NAMM)), MemoryConfig(update_every=16))
    prefill(video_lm, clip.frames, own)
    assert own.stats().n_updates == 6 and own.stats().final_kept <= 103  # its threshold may keep every token
    capped = MemoryManager(create_policy("namm", checkpoint=str(SHIPPED_NAMM)), MemoryConfig(update_every=16,
                                                                                                budget=40))
    prefill(video_lm, clip.frames, capped)
    assert capped.stats().n_updates == 6 and capped.stats().final_kept <= 40 + 103 % 16  # + tokens since the update


def test_adapter_answers_an_episode_from_a_file(tiny_composite, clip_file):
    path, clip = clip_file
    adapter = create_adapter("video", str(tiny_composite))
    assert isinstance(adapter, VideoAdapter) and adapter.modality == "video"
    episode = Episode("video_needle", "e0", {"video": str(path), "frames": 12, "question": QUESTION},
                      (clip.answer,), max_new_tokens=3)
    manager = MemoryManager(create_policy("h2o"), MemoryConfig(update_every=16, budget=16))
    prediction = adapter.run(episode, manager)
    assert isinstance(prediction.output, str) and prediction.extra["frames"] == 12
    assert prediction.extra["prompt_tokens"] == 1 + 12 * 4 + 6 and prediction.extra["new_tokens"] <= 3
    assert prediction.stats.n_updates >= 3 and prediction.seconds > 0


def test_video_model_names_resolve(tiny_composite):
    assert resolve_model("tiny-video-llm", VIDEO_MODELS).name == "tiny_video_llm"
    assert resolve_model(str(tiny_composite), VIDEO_MODELS) == tiny_composite
    with pytest.raises(ValueError, match="Did you mean 'tiny-video-llm'"):
        resolve_model("tiny-video-lm", VIDEO_MODELS)


# ---- Hugging Face LlavaNextVideo -------------------------------------------------------------------------
def test_llava_next_video_full_cache_matches_the_models_own_merge(tiny_llava, llava_lm, clip_file):
    from transformers import LlavaNextVideoForConditionalGeneration

    _, clip = clip_file
    video_lm = llava_lm
    assert isinstance(video_lm, LlavaNextVideoLM)
    assert video_lm.lm.config.text_config._attn_implementation == "namm"
    assert video_lm.lm.config.vision_config._attn_implementation != "namm"  # the vision tower is not causal
    frames = clip.frames[:8]
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=16))
    logits = prefill(video_lm, frames, manager)
    reference = LlavaNextVideoForConditionalGeneration.from_pretrained(tiny_llava, attn_implementation="eager").eval()
    ids = video_lm.prompt_ids(8 * 4, QUESTION)  # 4x4 patches, pooled 2x2 -> 4 tokens per frame
    with torch.no_grad():
        expected = reference(input_ids=ids, pixel_values_videos=video_lm.pixels(frames)).logits[:, -1]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert manager.stats().final_kept == ids.shape[1]


@pytest.mark.parametrize("policy", ["h2o", "snapkv", "streaming"])
def test_llava_next_video_visual_tokens_are_evicted(llava_lm, clip_file, policy):
    _, clip = clip_file
    video_lm = llava_lm
    ids = video_lm.prompt_ids(24 * 4, QUESTION)
    first = int((ids[0] == video_lm.lm.config.video_token_id).nonzero()[0])
    manager = MemoryManager(create_policy(policy), MemoryConfig(update_every=16, budget=8))
    prefill(video_lm, clip.frames, manager)
    last_update = ids.shape[1] // 16 * 16
    assert manager.stats().n_updates == last_update // 16
    assert held_visual(manager, first, last_update) <= 8 < last_update - first  # seen before the last update


def test_llava_next_video_adapter_answers_an_episode(llava_lm, clip_file):
    path, clip = clip_file
    episode = Episode("video_needle", "e0", {"video": str(path), "frames": 8, "question": QUESTION},
                      (clip.answer,), max_new_tokens=4)
    manager = MemoryManager(create_policy("tova"), MemoryConfig(update_every=16, budget=8))
    prediction = VideoAdapter(llava_lm).run(episode, manager)
    assert isinstance(prediction.output, str) and prediction.extra["prompt_tokens"] == 2 + 8 * 4 + 8
    assert prediction.stats.tokens_seen == prediction.extra["prompt_tokens"] + prediction.extra["new_tokens"] - 1


# ---- sweeps with bad input -------------------------------------------------------------------------------
def test_sweep_records_bad_videos_and_records_and_goes_on(tiny_composite, clip_file, tmp_path):
    path, _ = clip_file
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "good.mp4").write_bytes(path.read_bytes())
    (tmp_path / "videos" / "corrupt.mp4").write_bytes(b"\x00" * 2048)
    record = {"id": "good", "video_path": "good.mp4", "question": "what color ?", "candidates": ["red", "blue"],
              "correct_choice": 0}
    records = [record, {**record, "id": "missing", "video_path": "nowhere.mp4"},
               {**record, "id": "corrupt", "video_path": "corrupt.mp4"},
               {**record, "id": "too_long", "video_path": "good.mp4"},
               {k: v for k, v in record.items() if k != "candidates"} | {"id": "no_candidates"}]
    (tmp_path / "lvb_val.json").write_text(json.dumps(records))
    config = SweepConfig(tasks=["longvideobench"], policies=["full", "h2o"], cache_sizes=[16], adapter="video",
                         model=str(tiny_composite), data_path=str(tmp_path), update_every=16,
                         task_options={"frames": 12})
    # one episode asks for more frames than its clip has: per-record frame counts are not a loader option,
    # so make the clip shorter instead
    write_video(tmp_path / "videos" / "good.mp4", np.zeros((24, 32, 32, 3), np.uint8))
    write_video(tmp_path / "videos" / "short.mp4", np.zeros((6, 32, 32, 3), np.uint8))
    records[3]["video_path"] = "short.mp4"
    (tmp_path / "lvb_val.json").write_text(json.dumps(records))
    out = tmp_path / "rows.jsonl"
    assert run_sweep(config, out, adapter=create_adapter("video", str(tiny_composite))).written == 10
    rows = {(r["episode_id"], r["policy"]): r for r in read_rows(out)}
    assert rows["good", "full"]["status"] == "ok" and rows["good", "h2o"]["status"] == "ok"
    errors = {episode: rows[episode, "h2o"]["error"] for episode in ("missing", "corrupt", "too_long", "record4")}
    assert "nowhere.mp4: field 'video': video file not found" in errors["missing"]
    assert "corrupt.mp4: field 'video'" in errors["corrupt"]
    assert "short.mp4: field 'frames': asked for 12 frames but the clip has only 6" in errors["too_long"]
    assert "lvb_val.json: field 'candidates'" in errors["record4"] and "record 4" in errors["record4"]
    assert all(rows[key]["status"] == "error" for key in rows if key[0] != "good")


# ---- the shipped tiny video-LLM ------------------------------------------------------------------------------
@pytest.mark.slow
def test_shipped_tiny_video_llm_is_far_above_chance_with_the_full_cache(tmp_path):
    """Held-out clips (seed 1, never trained on) through the real mp4 -> decord path, full cache."""
    from namm_suite.tasks import TASKS, TaskContext

    adapter = create_adapter("video", "tiny-video-llm")
    for name in ("video_needle", "video_count", "video_order"):
        task = TASKS.get(name)()
        episodes = task.episodes(TaskContext(seed=1, limit=20, data_path=tmp_path))
        scores = [task.score(adapter.run(e, MemoryManager(create_policy("full"), MemoryConfig(update_every=32))).output, e)
                  for e in episodes]
        assert np.mean(scores) >= task.chance + MARGIN[name], (name, np.mean(scores))


@pytest.mark.parametrize("which", ["composite", "llava"])
def test_context_protocol_keeps_every_question_and_answer_token(tiny_composite, llava_lm, clip_file, which):
    """The frames are the context: compressed to 25 %; the question's and answer's tokens are never evicted."""
    path, clip = clip_file
    adapter = create_adapter("video", str(tiny_composite)) if which == "composite" else VideoAdapter(llava_lm)
    episode = Episode("video_needle", "e0", {"video": str(path), "frames": 8, "question": QUESTION},
                      (clip.answer,), max_new_tokens=4)
    manager = MemoryManager(create_policy("keynorm"), MemoryConfig(update_every=16, budget_fraction=0.25,
                                                                   protocol="context"))
    prediction = adapter.run(episode, manager)
    stats = prediction.stats
    n_question = adapter.video_lm.question_tokens(QUESTION)
    assert stats.context_tokens == prediction.extra["prompt_tokens"] - n_question
    assert stats.context_kept == round(0.25 * stats.context_tokens)
    later = set(range(stats.context_tokens, stats.tokens_seen))
    for layer in manager.cache.layers:
        for head in range(layer.positions.shape[1]):
            assert later <= set(layer.positions[0, head][layer.valid[0, head]].tolist())
