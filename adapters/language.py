"""Language adapter: any Hugging Face causal LM under a memory policy.

The model is loaded with the namm attention hook, the prompt is prefilled in schedule-aligned chunks and the
answer decoded greedily, one token per pass, with the same memory schedule (docs/namm-spec.md §1).
Grouped-query attention needs nothing special: the hook averages each KV head's query heads for the policy.
"""

from __future__ import annotations

import math
import time

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from namm_suite.attention import ATTN_IMPLEMENTATION
from namm_suite.manager import MemoryManager
from namm_suite.tasks.base import Episode

from .base import ADAPTERS, Prediction
from .models import load_causal_lm


class LanguageAdapter:
    """Runs prompts through a frozen causal LM whose KV cache is managed by a :class:`MemoryManager`."""

    modality = "language"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        if model.config._attn_implementation != ATTN_IMPLEMENTATION:
            raise ValueError(
                f"the model must be loaded with attn_implementation={ATTN_IMPLEMENTATION!r}, "
                f"got {model.config._attn_implementation!r}"
            )
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str, dtype: torch.dtype = torch.float32,
                        device: str = "cpu") -> LanguageAdapter:
        """Load an embedded model name (e.g. ``smollm2-135m``) or a local HF checkpoint directory."""
        model, tokenizer = load_causal_lm(name_or_path, attn_implementation=ATTN_IMPLEMENTATION,
                                          dtype=dtype, device=device)
        return cls(model, tokenizer)

    def encode(self, prompt: str, chat: bool = True) -> torch.Tensor:
        """Token ids ``[1, T]`` of ``prompt``, wrapped in the model's chat template when ``chat`` and the
        tokenizer has one."""
        if chat and getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt",
                return_dict=True,
            )["input_ids"]
        else:
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        return ids.to(self.model.device)

    def run(self, episode: Episode, manager: MemoryManager) -> Prediction:
        """Answer a language episode (``inputs["prompt"]``, optional ``inputs["chat"]``) greedily."""
        return self.generate(episode.inputs["prompt"], manager, max_new_tokens=episode.max_new_tokens,
                             chat=episode.inputs.get("chat", True))

    @torch.no_grad()
    def generate(self, prompt: str | torch.Tensor, manager: MemoryManager, max_new_tokens: int = 64,
                 chat: bool = True) -> Prediction:
        """Greedy answer to ``prompt`` (text or ids ``[1, T]``) with the cache managed by ``manager``;
        stops at an end-of-sequence token. ``output`` is the decoded answer; ``extra`` holds the token
        counts and the prefill/decode seconds."""
        ids = prompt if isinstance(prompt, torch.Tensor) else self.encode(prompt, chat=chat)
        manager.new_cache()
        start = time.perf_counter()
        logits = manager.forward(self.model, ids)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        new = greedy_decode(self.model, self.tokenizer, manager, logits, max_new_tokens)
        decode = time.perf_counter() - start
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        extra = {"prompt_tokens": ids.shape[1], "new_tokens": len(new), "prefill_seconds": prefill,
                 "decode_seconds": decode}
        return Prediction(text, manager.stats(), prefill + decode, extra)


    @torch.no_grad()
    def answer_likelihood(self, episode: Episode, manager: MemoryManager, answer: str | None = None) -> Prediction:
        """Teacher-forced likelihood of ``answer`` (default: the episode's first reference) after the prompt,
        under ``manager``'s memory: one pass, no sampling. ``output`` is the answer's geometric-mean token
        probability ``exp(mean log p)`` in (0, 1]; ``extra["mean_logprob"]`` is its log."""
        ids = self.encode(episode.inputs["prompt"], chat=episode.inputs.get("chat", True))
        answer = episode.references[0] if answer is None else answer
        target = self.tokenizer(answer, add_special_tokens=False, return_tensors="pt").input_ids.to(ids.device)
        if target.shape[1] == 0:
            raise ValueError(f"episode {episode.episode_id!r}: the answer {answer!r} has no tokens")
        manager.new_cache()
        start = time.perf_counter()
        first = manager.forward(self.model, ids)[:, None]  # predicts the first answer token
        rest = manager.forward(self.model, target[:, :-1], all_logits=True) if target.shape[1] > 1 else first[:, :0]
        logprobs = torch.log_softmax(torch.cat([first, rest], dim=1).float(), dim=-1)
        mean = float(logprobs.gather(-1, target[..., None]).mean())
        extra = {"prompt_tokens": ids.shape[1], "answer_tokens": target.shape[1], "mean_logprob": mean}
        return Prediction(math.exp(mean), manager.stats(), time.perf_counter() - start, extra)


@ADAPTERS.register("language")
def _language_adapter(model: str, **options) -> LanguageAdapter:
    return LanguageAdapter.from_pretrained(model, **options)


def greedy_decode(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, manager: MemoryManager,
                  logits: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Greedy token ids after a prefill whose last-position logits ``[1, V]`` are ``logits``: one token per
    pass through ``manager``, stopping at an end-of-sequence token or after ``max_new_tokens``."""
    stop_ids = _stop_ids(model, tokenizer)
    new: list[int] = []
    while len(new) < max_new_tokens:
        token = int(logits.argmax(-1))
        if token in stop_ids:
            break
        new.append(token)
        if len(new) == max_new_tokens:
            break
        logits = manager.forward(model, torch.tensor([[token]], device=logits.device))
    return new


def _stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
