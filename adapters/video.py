"""Video adapter: LLaVA-style video-LLMs whose language model's KV cache is managed by a memory policy.

An episode names a video file, how many frames to sample and a question
(``inputs = {"video": path, "frames": N, "question": text}``). The adapter samples N frames uniformly with
decord, lets the model turn them and the question into one ``inputs_embeds`` sequence (visual tokens in
place of the video placeholder), prefills it in schedule-aligned chunks under the
:class:`~namm_suite.manager.MemoryManager` — so visual tokens enter the same ragged cache and are evicted by
the same policies as text — and decodes the answer greedily with the same schedule.

Two model families, told apart by the checkpoint's ``config.json``:

- the embedded **tiny-video-llm** (``checkpoints/tiny_video_llm``, :mod:`.video_model`): timm backbone →
  MLP projector → Llama, trained by ``scripts/train_video_llm.py``;
- Hugging Face **LlavaNextVideoForConditionalGeneration** checkpoints in a local folder (with their tokenizer
  and video processor): the language model gets the ``namm`` hook, the vision tower keeps SDPA, and the
  video features are merged exactly as the model does (placeholder tokens replaced by the projected,
  pooled frame features), with the prompt ``"USER: <video>\\n{question} ASSISTANT:"``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from namm_suite.attention import ATTN_IMPLEMENTATION
from namm_suite.manager import MemoryManager
from namm_suite.registry import Registry
from namm_suite.shipped import CHECKPOINTS
from namm_suite.tasks.base import Episode
from namm_suite.tasks.video.frames import read_frames

from .base import ADAPTERS, PositionGuard, Prediction
from .language import greedy_decode, prefill_prompt
from .models import resolve_model
from .video_model import TinyVideoLLM, is_tiny_video_llm

# embedded video-LLMs: name -> checkpoint folder shipped with the project
VIDEO_MODELS: Registry[Path] = Registry("embedded video model")
VIDEO_MODELS.register("tiny-video-llm")(CHECKPOINTS / "tiny_video_llm")


class VideoLM(Protocol):
    """What the adapter needs from a video-LLM: the causal LM the manager drives, and prompt embeddings."""

    lm: torch.nn.Module
    tokenizer: object

    def prompt_embeds(self, frames: np.ndarray, question: str) -> torch.Tensor:
        """``inputs_embeds [1, L, E]`` of the frames (uint8 ``[N, H, W, 3]``) and the question."""
        ...

    def question_tokens(self, question: str) -> int:
        """How many of the last prompt embeddings are the question (the rest, frames first, is the context)."""
        ...


class TinyVideoLM:
    """The embedded composite: BOS, ``N · grid²`` visual tokens, the question's words; answers one word."""

    def __init__(self, model: TinyVideoLLM, tokenizer) -> None:
        self.model, self.lm, self.tokenizer = model, model.lm, tokenizer

    def prompt_embeds(self, frames: np.ndarray, question: str) -> torch.Tensor:
        ids = self.tokenizer(question, add_special_tokens=False, return_tensors="pt").input_ids
        return self.model.prompt_embeds(frames, ids)

    def question_tokens(self, question: str) -> int:
        return len(self.tokenizer(question, add_special_tokens=False).input_ids)


class LlavaNextVideoLM:
    """A Hugging Face ``LlavaNextVideoForConditionalGeneration`` with its tokenizer and video processor."""

    def __init__(self, model, tokenizer, video_processor) -> None:
        self.lm, self.tokenizer, self.video_processor = model, tokenizer, video_processor

    def pixels(self, frames: np.ndarray) -> torch.Tensor:
        """``pixel_values_videos [1, N, 3, H, W]`` from the checkpoint's own video processor."""
        pixels = self.video_processor(videos=[frames], return_tensors="pt")["pixel_values_videos"]
        return pixels.to(self.lm.device, self.lm.dtype)

    def prompt_ids(self, n_video_tokens: int, question: str) -> torch.Tensor:
        """``[1, T]`` ids of ``"USER: <video>\\n{question} ASSISTANT:"`` with the video placeholder repeated
        ``n_video_tokens`` times (as the model's processor expands it)."""
        before = self.tokenizer("USER: ", return_tensors="pt").input_ids[0]
        after = self.tokenizer(self.question_text(question), add_special_tokens=False, return_tensors="pt").input_ids[0]
        video = torch.full((n_video_tokens,), self.lm.config.video_token_id, dtype=before.dtype)
        return torch.cat([before, video, after])[None].to(self.lm.device)

    @staticmethod
    def question_text(question: str) -> str:
        """What follows the video in the prompt."""
        return f"\n{question} ASSISTANT:"

    def question_tokens(self, question: str) -> int:
        return len(self.tokenizer(self.question_text(question), add_special_tokens=False).input_ids)

    def prompt_embeds(self, frames: np.ndarray, question: str) -> torch.Tensor:
        features = self.lm.get_video_features(self.pixels(frames)).pooler_output  # [1, V, E]
        ids = self.prompt_ids(features.shape[1], question)
        embeds = self.lm.get_input_embeddings()(ids)
        _, mask = self.lm.model.get_placeholder_mask(ids, inputs_embeds=embeds, video_features=features)
        return embeds.masked_scatter(mask, features.to(embeds.dtype))


def load_video_lm(name_or_path: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> VideoLM:
    """Load the tiny video-LLM or a LlavaNextVideo checkpoint, its LM with ``attn_implementation="namm"``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = resolve_model(name_or_path, VIDEO_MODELS)
    if is_tiny_video_llm(path):
        model = TinyVideoLLM.load(path).to(device, dtype)
        return TinyVideoLM(model, PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True))
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type != "llava_next_video":
        raise ValueError(f"{path}/config.json: field 'model_type' is {model_type!r}; the video adapter takes "
                         "'llava_next_video' checkpoints or the tiny video-LLM")
    from transformers import AutoVideoProcessor, LlavaNextVideoForConditionalGeneration

    # only the language model's attention goes through the hook; the vision tower is not causal
    attn = {"": "sdpa", "vision_config": "sdpa", "text_config": ATTN_IMPLEMENTATION}
    model = LlavaNextVideoForConditionalGeneration.from_pretrained(path, attn_implementation=attn, dtype=dtype,
                                                                   local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    processor = AutoVideoProcessor.from_pretrained(path, local_files_only=True)
    return LlavaNextVideoLM(model.to(device).eval(), tokenizer, processor)


class VideoAdapter:
    """Answers video episodes greedily with a video-LLM whose LM cache is managed by a :class:`MemoryManager`."""

    modality = "video"

    def __init__(self, video_lm: VideoLM) -> None:
        self.video_lm = video_lm
        self.tokenizer = video_lm.tokenizer
        self.positions = PositionGuard(video_lm.lm.config.get_text_config())
        if video_lm.lm.config.get_text_config()._attn_implementation != ATTN_IMPLEMENTATION:
            raise ValueError(f"the language model must use attn_implementation={ATTN_IMPLEMENTATION!r}")

    @torch.no_grad()
    def run(self, episode: Episode, manager: MemoryManager) -> Prediction:
        """Answer ``episode`` (``inputs``: ``video`` path, ``frames`` to sample or None for all, ``question``).

        ``output`` is the decoded answer; ``extra`` holds the visual and prompt token counts and the
        decode/prefill/answer seconds. Bad videos raise :class:`~namm_suite.tasks.base.TaskDataError`.
        """
        episode.check()
        start = time.perf_counter()
        frames = read_frames(Path(episode.inputs["video"]), episode.inputs.get("frames"))
        embeds = self.video_lm.prompt_embeds(frames, episode.inputs["question"])
        decoded = time.perf_counter()
        self.positions.check(int(embeds.shape[1]), f"visual + text tokens of {frames.shape[0]} frames")
        lm = self.video_lm.lm
        split = embeds.shape[1] - self.video_lm.question_tokens(episode.inputs["question"])
        logits = prefill_prompt(manager, lm, embeds[:, :split], embeds[:, split:], embeds=True)
        prefilled = time.perf_counter()
        new = greedy_decode(lm, self.tokenizer, manager, logits, episode.max_new_tokens)
        end = time.perf_counter()
        extra = {"frames": int(frames.shape[0]), "prompt_tokens": int(embeds.shape[1]), "new_tokens": len(new),
                 "video_seconds": decoded - start, "prefill_seconds": prefilled - decoded,
                 "decode_seconds": end - prefilled}
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Prediction(text, manager.stats(), end - start, extra)


@ADAPTERS.register("video")
def _video_adapter(model: str, **options) -> VideoAdapter:
    return VideoAdapter(load_video_lm(model, **options))
