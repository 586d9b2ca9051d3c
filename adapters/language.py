"""Language adapter: any Hugging Face causal LM under a memory policy.

The model is loaded with the namm attention hook, the prompt is prefilled in schedule-aligned chunks and the
answer decoded greedily, one token per pass, with the same memory schedule (docs/namm-spec.md §1).
Grouped-query attention needs nothing special: the hook averages each KV head's query heads for the policy.

Prompt layout: when an episode names its ``context`` (and an answer ``cue``), the prompt is two pieces,
tokenised apart as kvpress's pipeline does: the *context part* (chat template header, user turn up to the
end of the context) and the *question part* (the rest of the user turn, the assistant header and the cue,
e.g. ``"Answer:"``, after it, where a chat model answers briefly). Every protocol reads the same tokens; the
protocol (``MemoryConfig.protocol``, see :func:`prefill_prompt`) only decides what is compressed when.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from namm_suite.attention import ATTN_IMPLEMENTATION
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.shared_prefix import SharedPrefix
from namm_suite.tasks.base import Episode

from .base import ADAPTERS, PositionGuard, Prediction
from .models import load_causal_lm

logger = logging.getLogger(__name__)


class LanguageAdapter:
    """Runs prompts through a frozen causal LM whose KV cache is managed by a :class:`MemoryManager`.

    Prompt format: a chat model's prompt is its chat template around one user turn (the task's prompt),
    with the generation prompt (assistant header) after it. A tokenizer without a chat template (a base
    model, some GGUF files) gets the plain-text format instead, with a warning: the tokenizer's BOS token if
    it adds one, then the prompt text, then the question and answer cue as the task gives them (e.g.
    ``"...\nAnswer:"``), nothing else; ``chat=False`` asks for it on any model.
    """

    modality = "language"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        if model.config._attn_implementation != ATTN_IMPLEMENTATION:
            raise ValueError(
                f"the model must be loaded with attn_implementation={ATTN_IMPLEMENTATION!r}, "
                f"got {model.config._attn_implementation!r}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.positions = PositionGuard(model.config)
        if not getattr(tokenizer, "chat_template", None):
            logger.warning("%s: the tokenizer has no chat template; prompts are plain text (BOS, prompt, "
                           "question and answer cue; see LanguageAdapter)", model.config.name_or_path)

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
        return torch.cat(self.encode_parts({"prompt": prompt}, chat), dim=1)

    def encode_parts(self, inputs: dict, chat: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``([1, C], [1, Q])`` of the context part and the question part of an episode's
        ``inputs`` (see the module docstring; without ``context`` the whole prompt is the context part)."""
        if not inputs["prompt"].strip():
            raise ValueError("the prompt is empty: give some text")
        context, question, cue = split_prompt(inputs)
        if chat and getattr(self.tokenizer, "chat_template", None):
            head, tail = chat_wrapper(self.tokenizer)
            pieces, special = (head + context, question + tail + cue), False
        else:
            pieces, special = (context, question + cue), True
        ids = [self.tokenizer(text, add_special_tokens=special and i == 0, return_tensors="pt").input_ids
               for i, text in enumerate(pieces)]
        return ids[0].to(self.model.device), ids[1].to(self.model.device)

    def run(self, episode: Episode, manager: MemoryManager, prefix: SharedPrefix | None = None) -> Prediction:
        """Answer a language episode (``inputs["prompt"]``, optional ``chat``, ``context``, ``cue``) greedily;
        from ``prefix`` (:meth:`read_prefix` of this episode) when given, instead of reading the prompt."""
        if prefix is None:
            parts = self.encode_parts(episode.inputs, episode.inputs.get("chat", True))
            return self.generate(parts, manager, max_new_tokens=episode.max_new_tokens)
        start = time.perf_counter()
        manager.start_from(prefix.manager)
        context, question = prefix.parts
        logits = finish_prompt(manager, self.model, question, prefix.logits)
        prefill = prefix.seconds + time.perf_counter() - start
        extra = {"shared_prefill_seconds": prefix.seconds}
        return self._answer(manager, logits, context, question, prefill, episode.max_new_tokens, extra)

    def run_batch(self, episodes: list[Episode], managers: list[MemoryManager]) -> list[Prediction]:
        """Answer several episodes in one ragged batch, each under its own manager
        (:func:`~.language_batch.run_batch`): the predictions of :meth:`run` one by one."""
        from .language_batch import run_batch

        return run_batch(self, episodes, managers)

    def read_prefix(self, episode: Episode, config: MemoryConfig, reads_attention: bool) -> SharedPrefix:
        """Read ``episode``'s compressed part once under ``config``'s one-shot protocol, for :meth:`run` under
        every policy (:mod:`~namm_suite.shared_prefix`); ``reads_attention``: record every attention row."""
        context, question = self.encode_parts(episode.inputs, episode.inputs.get("chat", True))
        self.positions.check(context.shape[1] + question.shape[1])
        reader = lambda manager: read_compressed(manager, self.model, context, question)
        return SharedPrefix.read(config, reads_attention, reader, (context, question))

    @torch.no_grad()
    def generate(self, prompt: str | torch.Tensor | tuple[torch.Tensor, torch.Tensor], manager: MemoryManager,
                 max_new_tokens: int = 64, chat: bool = True) -> Prediction:
        """Greedy answer to ``prompt`` (text, ids ``[1, T]``, or the context and question ids of
        :meth:`encode_parts`) with the cache managed by ``manager``, under its protocol; stops at an
        end-of-sequence token. ``output`` is the decoded answer; ``extra`` holds the token counts and the
        prefill/decode seconds. An empty prompt is a ValueError; one past the model's maximum positions is
        warned about (:class:`~.base.PositionGuard`)."""
        if isinstance(prompt, str):
            prompt = self.encode_parts({"prompt": prompt}, chat)
        context, question = prompt if isinstance(prompt, tuple) else (prompt, prompt[:, :0])
        if not context.shape[1] + question.shape[1]:
            raise ValueError("the prompt is empty (0 tokens): give some text")
        self.positions.check(context.shape[1] + question.shape[1])
        start = time.perf_counter()
        logits = prefill_prompt(manager, self.model, context, question)
        return self._answer(manager, logits, context, question, time.perf_counter() - start, max_new_tokens)

    @torch.no_grad()
    def _answer(self, manager: MemoryManager, logits: torch.Tensor, context: torch.Tensor, question: torch.Tensor,
                prefill: float, max_new_tokens: int, extra: dict | None = None) -> Prediction:
        """Decode greedily after a prefill (``logits [1, V]``, which took ``prefill`` seconds)."""
        start = time.perf_counter()
        new = greedy_decode(self.model, self.tokenizer, manager, logits, max_new_tokens)
        return self.prediction(manager, new, context, question, prefill, time.perf_counter() - start, extra)

    def prediction(self, manager: MemoryManager, new: list[int], context: torch.Tensor, question: torch.Tensor,
                   prefill: float, decode: float, extra: dict | None = None) -> Prediction:
        """The answer ``new`` (token ids) to a prompt of ``context`` and ``question`` ids as a Prediction:
        its text, ``manager``'s statistics, the token counts and the prefill/decode seconds."""
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        extra = {"prompt_tokens": context.shape[1] + question.shape[1], "question_tokens": question.shape[1],
                 "new_tokens": len(new), "prefill_seconds": prefill, "decode_seconds": decode, **(extra or {})}
        return Prediction(text, manager.stats(), prefill + decode, extra)

    @torch.no_grad()
    def answer_likelihood(self, episode: Episode, manager: MemoryManager, answer: str | None = None,
                          prefix: SharedPrefix | None = None) -> Prediction:
        """Teacher-forced likelihood of ``answer`` (default: the episode's first reference) after the prompt,
        under ``manager``'s memory: one pass, no sampling. ``output`` is the answer's geometric-mean token
        probability ``exp(mean log p)`` in (0, 1]; ``extra["mean_logprob"]`` is its log.

        A manager with ``rows`` > 1 reads the episode as that many rows that differ only in their memory
        (population members, one NAMM θ each; the prompt before the first eviction is computed once):
        ``output`` and ``extra["mean_logprob"]`` are then lists, one per row, and ``extra["mean_kept"]``
        gives each row's ``mean_kept``. From ``prefix`` (:meth:`read_prefix` of this episode, one row) when
        given, instead of reading the prompt's compressed part."""
        context, question = self.encode_parts(episode.inputs, episode.inputs.get("chat", True))
        answer = episode.references[0] if answer is None else answer
        cue = episode.inputs.get("cue") or ""
        if cue and not cue[-1].isspace():  # after "Answer:" the model's answer starts with a space
            answer = " " + answer.lstrip()
        target = self.tokenizer(answer, add_special_tokens=False, return_tensors="pt").input_ids.to(context.device)
        if target.shape[1] == 0:
            raise ValueError(f"episode {episode.episode_id!r}: the answer {answer!r} has no tokens")
        rows = manager.rows
        start = time.perf_counter()
        if prefix is None:
            first = prefill_prompt(manager, self.model, context, question)[:, None]  # predicts answer token 1
        else:
            manager.start_from(prefix.manager)
            first = finish_prompt(manager, self.model, prefix.parts[1], prefix.logits)[:, None]
        rest = manager.forward(self.model, target[:, :-1], all_logits=True) if target.shape[1] > 1 else first[:, :0]
        logprobs = torch.log_softmax(torch.cat([first, rest], dim=1).float(), dim=-1)
        means = logprobs.gather(-1, target.expand(rows, -1)[..., None]).mean((1, 2)).tolist()
        extra = {"prompt_tokens": context.shape[1] + question.shape[1], "answer_tokens": target.shape[1],
                 "mean_logprob": means[0] if rows == 1 else means}
        if rows > 1:
            extra["mean_kept"] = manager.mean_kept_rows()
        if prefix is not None:
            extra["shared_prefill_seconds"] = prefix.seconds
        output = math.exp(means[0]) if rows == 1 else [math.exp(m) for m in means]
        return Prediction(output, manager.stats(), time.perf_counter() - start, extra)


@ADAPTERS.register("language")
def _language_adapter(model: str, **options) -> LanguageAdapter:
    return LanguageAdapter.from_pretrained(model, **options)


def split_prompt(inputs: dict) -> tuple[str, str, str]:
    """``(context, question, cue)`` texts of an episode's ``prompt``: the prompt up to the end of
    ``inputs["context"]``, the rest without the answer cue, and the cue (``inputs["cue"]``, which must end
    the prompt). Without ``context`` the whole prompt is the context."""
    prompt, cue = inputs["prompt"], inputs.get("cue") or ""
    if cue and not prompt.endswith(cue):
        raise ValueError(f"episode input 'cue' {cue!r} does not end the prompt")
    body = prompt[:len(prompt) - len(cue)]
    if inputs.get("context") is None:
        return body, "", cue
    start = body.find(inputs["context"])
    if start < 0:
        raise ValueError("episode input 'context' is not part of the prompt")
    end = start + len(inputs["context"])
    return body[:end], body[end:], cue


def chat_wrapper(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    """The chat template's text before and after a user message (with the assistant header), found as
    kvpress's pipeline does, by rendering a marker message and splitting at the marker."""
    marker = "<<NAMM-USER-MESSAGE>>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], add_generation_prompt=True,
                                         tokenize=False)
    head, found, tail = text.partition(marker)
    if not found:
        raise ValueError("the tokenizer's chat template does not reproduce the user message verbatim")
    return head, tail


def prefill_prompt(manager: MemoryManager, model: torch.nn.Module, context: torch.Tensor,
                   question: torch.Tensor, embeds: bool = False) -> torch.Tensor:
    """Start a sequence and read a prompt under ``manager.config.protocol``; return the logits ``[1, V]``
    of its last position.

    ``context`` and ``question``: ids ``[1, C]`` / ``[1, Q]`` (``inputs_embeds [1, *, E]`` when ``embeds``).

    - ``scheduled``: the whole prompt on the schedule (evictions continue while the answer is decoded);
      a relative budget is relative to the whole prompt;
    - ``context``: the context on the schedule (or not at all under ``evict='once'``), one update at its end,
      then the manager freezes: the question and the answer are read with no eviction;
    - ``query-aware``: as ``context`` with the question inside the compressed part (SnapKV's protocol).

    Then :meth:`MemoryManager.answer_start` records the cache the answer starts from. The two halves,
    :func:`read_compressed` and :func:`finish_prompt`, let several policies share the first
    (:mod:`~namm_suite.shared_prefix`).
    """
    logits = read_compressed(manager, model, context, question, embeds)
    return finish_prompt(manager, model, question, logits, embeds)


def read_compressed(manager: MemoryManager, model: torch.nn.Module, context: torch.Tensor,
                    question: torch.Tensor, embeds: bool = False) -> torch.Tensor:
    """Start a sequence and read the compressed part of the prompt (the context under the ``context``
    protocol with a question, else the whole prompt); return its last-position logits ``[1, V]``."""
    compressed, _ = prompt_parts(manager.config.protocol, context, question)
    manager.new_cache(context_tokens=compressed.shape[1])
    return manager.forward(model, **{"inputs_embeds" if embeds else "input_ids": compressed})


def prompt_parts(protocol: str, context: torch.Tensor, question: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(compressed, rest)``: the part of a prompt ``protocol`` compresses (the context under ``context``
    with a question, else the whole prompt) and what is read after it with no eviction (``[1, 0]`` if none)."""
    if protocol == "context" and question.shape[1]:
        return context, question
    return torch.cat([context, question], dim=1), question[:, :0]


def finish_prompt(manager: MemoryManager, model: torch.nn.Module, question: torch.Tensor, logits: torch.Tensor,
                  embeds: bool = False) -> torch.Tensor:
    """After :func:`read_compressed`: the protocol's eviction at the end of the compressed part and the rest
    of the prompt; returns the prompt's last-position logits ``[1, V]`` (``logits`` when nothing is left)."""
    protocol = manager.config.protocol
    if protocol != "scheduled":
        manager.freeze()
        if protocol == "context" and question.shape[1]:
            logits = manager.forward(model, **{"inputs_embeds" if embeds else "input_ids": question})
    manager.answer_start()
    return logits


def greedy_decode(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, manager: MemoryManager,
                  logits: torch.Tensor, max_new_tokens: int,
                  stop_when: Callable[[list[int]], bool] | None = None) -> list[int]:
    """Greedy token ids after a prefill whose last-position logits ``[1, V]`` are ``logits``: one token per
    pass through ``manager``, stopping at an end-of-sequence token, after ``max_new_tokens``, or after the
    token for which ``stop_when(tokens so far)`` is true (lm-eval's stop strings)."""
    stop_ids = stop_token_ids(model, tokenizer)
    new: list[int] = []
    while (token := next_token(logits, new, max_new_tokens, stop_ids)) is not None:
        if stop_when is not None and stop_when(new):
            break
        logits = manager.forward(model, torch.tensor([[token]], device=logits.device))
    return new


def next_token(logits: torch.Tensor, new: list[int], max_new_tokens: int, stop_ids: set[int]) -> int | None:
    """One greedy step: the most likely token of ``logits`` (``[V]`` or ``[1, V]``) is appended to ``new``
    and returned for the next pass; None when the answer is over (an end-of-sequence token, which is not
    appended, or ``max_new_tokens`` reached)."""
    if len(new) >= max_new_tokens:
        return None
    token = int(logits.argmax(-1))
    if token in stop_ids:
        return None
    new.append(token)
    return token if len(new) < max_new_tokens else None


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The ids that end an answer: the model's generation ``eos_token_id`` (one or a list) and the
    tokenizer's."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
