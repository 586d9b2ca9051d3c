"""lm-eval bridge: any lm-evaluation-harness task under a memory policy, as lm-eval model ``namm``.

:class:`NammLM` is lm-eval's ``HFLM`` (tokenisation, truncation, chat templates, request grouping) with the
two model calls replaced, so that the KV cache is managed by a :class:`MemoryManager` in both of them:

- ``loglikelihood`` (multiple choice, perplexity): one sequence at a time, context then continuation fed in
  schedule-aligned chunks (:meth:`MemoryManager.forward`); evictions happen between passes exactly as
  the schedule dictates (docs/namm-spec.md §1), and the continuation is scored from the logits of those
  passes.
- ``generate_until``: greedy decoding as the language adapter decodes (the same prefill and
  :func:`~.language.greedy_decode`), stopping at the EOS token, at any ``until`` string or after
  ``max_gen_toks`` tokens.

lm-eval 0.4.13 discovers no third-party models through entry points, so the ``namm`` name exists once this
module is imported: use ``namm lm-eval``, :func:`evaluate`, or :func:`main`, which is the ``lm_eval`` command
line with ``namm`` registered (script ``namm-lm-eval``, or ``python -m namm_suite.adapters.lm_eval_model``)::

    python -m namm_suite.adapters.lm_eval_model --model namm \\
        --model_args pretrained=smollm2-135m,policy=h2o,cache_size=256,update_every=64 \\
        --tasks my_task --include_path my_tasks/ --device cpu
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import (
    Collator,
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from tqdm import tqdm

from namm_suite.attention import ATTN_IMPLEMENTATION
from namm_suite.device import DTYPES, resolve_device
from namm_suite.manager import MemoryConfig, MemoryManager, MemoryStats
from namm_suite.policies import POLICIES, REFERENCE, PolicySpec
from namm_suite.registry import UnknownNameError

from .language import greedy_decode, prefill_prompt
from .models import resolve_model

logger = logging.getLogger(__name__)

#: the name lm-eval knows this model by (``--model namm``)
MODEL_NAME = "namm"


@dataclass
class MemoryArgs:
    """The memory ``model_args`` of ``--model namm`` (validated; every other argument goes to ``HFLM``).

    Attributes:
        policy: registered memory policy name (``namm policies`` lists them).
        cache_size: tokens kept per KV head at each memory update; required by budgeted policies, a cap for
            the NAMM, ignored by ``full``.
        update_every: tokens between memory updates (paper: 512; a multiple of 16 for the NAMM).
        namm_checkpoint: NAMM checkpoint path (policy ``namm``; ``None`` = the built-in parameters).
        selection: NAMM eviction rule, ``kappa`` (reference) or ``threshold``.
    """

    policy: str = REFERENCE
    cache_size: int | None = None
    update_every: int = 64
    namm_checkpoint: str | None = None
    selection: str = "kappa"

    def __post_init__(self) -> None:
        self.policy = str(self.policy)
        try:
            POLICIES.get(self.policy)
        except UnknownNameError as error:  # its message has "did you mean" and every valid name
            raise ValueError(f"namm model_args: {error}") from None
        self.cache_size = None if self.cache_size is None else _positive_int("cache_size", self.cache_size)
        self.update_every = _positive_int("update_every", self.update_every)
        if self.needs_budget and self.cache_size is None:
            raise ValueError(f"namm model_args: policy={self.policy} needs cache_size=N (tokens per KV head)")
        if (self.namm_checkpoint is not None or self.selection != "kappa") and not _takes_namm_fields(self.policy):
            owners = "/".join(name for name in POLICIES.names() if _takes_namm_fields(name))
            raise ValueError(f"namm model_args: namm_checkpoint and selection only apply to policy={owners}")

    @property
    def _spec(self) -> PolicySpec:
        return PolicySpec(self.policy)

    @property
    def needs_budget(self) -> bool:
        return self._spec.policy_class().budget_rule == "required"

    def build_manager(self) -> MemoryManager:
        """A fresh manager for these settings."""
        return self._spec.build_manager(MemoryConfig(update_every=self.update_every, budget=self.cache_size),
                                        checkpoint=self.namm_checkpoint, selection=self.selection)


def _takes_namm_fields(policy: str) -> bool:
    """Whether ``policy`` has the ``checkpoint`` and ``selection`` fields that namm_checkpoint/selection fill."""
    return {"checkpoint", "selection"} <= set(PolicySpec(policy).resolved({"checkpoint": None, "selection": None}))


def _positive_int(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f"namm model_args: {name} must be a positive integer, got {value!r}")
    return number


def _check_hflm_arguments(kwargs: dict[str, Any]) -> None:
    """Refuse a ``model_args`` key that is neither a memory argument nor an ``HFLM`` one (a typo such as
    ``update_evry`` would otherwise reach the model's ``__init__``)."""
    import difflib
    import inspect

    known = {*inspect.signature(NammLM.__init__).parameters, *inspect.signature(HFLM.__init__).parameters}
    known -= {"self", "kwargs"}
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"namm model_args: unknown key {key!r}.{hint} Memory keys: policy, cache_size, "
                             "update_every, namm_checkpoint, selection; the others go to lm-eval's HFLM")


@register_model(MODEL_NAME)
class NammLM(HFLM):
    """lm-eval's Hugging Face model with its KV cache managed by a memory policy (batch size 1).

    Args:
        pretrained: an embedded model name (e.g. ``smollm2-135m``) or a local HF checkpoint directory.
        policy, cache_size, update_every, namm_checkpoint, selection: see :class:`MemoryArgs`.
        batch_size: must be 1 (one sequence per cache).
        device: ``auto`` (default: ``cuda`` when available, else ``cpu``), ``cpu`` or ``cuda``.
        dtype: ``fp32`` (default), ``bf16``, ``fp16`` (as ``namm --dtype``) or any ``HFLM`` dtype name.
        **kwargs: any other ``HFLM`` argument (``max_length``, ``add_bos_token``, ...).

    After a run, :attr:`memory_log` holds one :class:`MemoryStats` per sequence, summarised by
    :meth:`memory_summary` and written into lm-eval's ``results["config"]``.
    """

    def __init__(self, pretrained: str, policy: str = REFERENCE, cache_size: int | None = None,
                 update_every: int = 64, namm_checkpoint: str | None = None, selection: str = "kappa",
                 batch_size: int | str = 1, device: str | None = None, **kwargs: Any) -> None:
        self.memory = MemoryArgs(policy, cache_size, update_every, namm_checkpoint, selection)
        _check_hflm_arguments(kwargs)
        self.manager = self.memory.build_manager()
        self.memory_log: list[MemoryStats] = []
        if str(batch_size) != "1":
            raise ValueError(f"namm model runs one sequence per cache: batch_size must be 1, got {batch_size}")
        if kwargs.pop("attn_implementation", ATTN_IMPLEMENTATION) != ATTN_IMPLEMENTATION:
            raise ValueError(f"namm model always loads with attn_implementation={ATTN_IMPLEMENTATION!r}")
        device = resolve_device(device or "auto")
        kwargs["dtype"] = DTYPES.get(str(kwargs.get("dtype", "fp32")), kwargs.get("dtype"))  # fp32 -> float32
        path = str(resolve_model(str(pretrained)))
        super().__init__(pretrained=path, batch_size=1, device=device,
                         attn_implementation=ATTN_IMPLEMENTATION, **kwargs)

    # ---- loglikelihood -------------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]],
                              disable_tqdm: bool = False, override_bs: int | None = None,
                              ) -> list[tuple[float, bool]]:
        """``(sum log p(continuation), continuation is greedy)`` for ``(strings, context ids, continuation
        ids)`` requests; requests sharing context + continuation[:-1] are scored once, as in ``HFLM``."""
        ordered = Collator(requests, sort_fn=lambda r: (-len(r[1] + r[2]), tuple(r[1] + r[2])),
                           group_by="contexts" if self.logits_cache else None,
                           group_fn=lambda r: r[-2] + r[-1][:-1])
        results: list[tuple[float, bool]] = []
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="namm loglikelihood")
        for chunk in ordered.get_batched(n=1):
            for request_str, context, continuation in chunk:
                logprobs = self._continuation_logprobs(context, continuation)[None]  # [1, C, V]
                for req_str, cont, lp in ordered.get_cache(req_str=request_str, cxt_toks=context,
                                                           cont_toks=continuation, logits=logprobs):
                    target = torch.tensor(cont, dtype=torch.long, device=lp.device)[None]
                    greedy = bool((lp.argmax(-1)[:, -target.shape[1]:] == target).all())
                    answer = (float(lp[:, -target.shape[1]:].gather(2, target[..., None]).sum()), greedy)
                    results.append(answer)
                    if req_str is not None:  # None for loglikelihood_rolling windows
                        self.cache_hook.add_partial("loglikelihood", req_str, answer)
                    bar.update(1)
        bar.close()
        return ordered.get_original(results)

    @torch.no_grad()
    def _continuation_logprobs(self, context: list[int], continuation: list[int]) -> torch.Tensor:
        """Log-probabilities ``[len(continuation), V]`` (``HFLM``'s left truncation to ``max_length``).

        Context and continuation run as one stream of schedule-aligned chunks through a fresh cache
        (:meth:`MemoryManager.forward`): memory updates fall where they would when decoding, and the
        continuation's logits are read from the passes that contain it."""
        tokens = (context + continuation)[-(self.max_length + 1):]
        inputs = torch.tensor([tokens[:-1]], dtype=torch.long, device=self.device)
        first = max(inputs.shape[1] - len(continuation), 0)  # first position whose logits score the continuation
        self.manager.new_cache()
        with self._autocast():
            logits = self.manager.forward(self.model, inputs, logits_from=first)[0]
        self.memory_log.append(self.manager.stats())
        return F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)

    # ---- generation ----------------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Greedy continuation of each request's context until a stop string, EOS or ``max_gen_toks``."""
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        results = []
        for request in tqdm(requests, disable=disable_tqdm or self.rank != 0, desc="namm generate_until"):
            context, gen_kwargs = request.args
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = int(kwargs.pop("max_gen_toks"))
            if kwargs.get("do_sample") or kwargs.get("temperature", 0.0):
                logger.warning("namm model decodes greedily; ignoring sampling settings %s", kwargs)
            ids, _ = self.tok_batch_encode([context], left_truncate_len=self.max_length - max_gen_toks,
                                           truncation=self.truncation)
            if ids.shape[1] == 0:
                ids = torch.tensor([[self.prefix_token_id]])
            new = self._greedy(ids.to(self.device), until, max_gen_toks)
            if isinstance(self.think_end_token, int) and self.think_end_token in new:
                new = new[len(new) - new[::-1].index(self.think_end_token):]
            think = self.think_end_token if isinstance(self.think_end_token, str) else None
            text = postprocess_generated_text(self.tok_decode(new), stop=until, think_end_token=think)
            results.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return results

    @torch.no_grad()
    def _greedy(self, ids: torch.Tensor, until: list[str], max_new_tokens: int) -> list[int]:
        """New token ids after ``ids [1, T]``, as the language adapter answers (:func:`prefill_prompt`, then
        :func:`greedy_decode`), also stopping after the token whose text completes an ``until`` string."""

        def stop_when(new: list[int]) -> bool:
            text = self.tok_decode(new)
            return any(stop and stop in text for stop in until)

        with self._autocast():
            logits = prefill_prompt(self.manager, self.model, ids, ids[:, :0])
            new = greedy_decode(self.model, self.tokenizer, self.manager, logits, max_new_tokens, stop_when)
        self.memory_log.append(self.manager.stats())
        return new

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                              enabled=self.mixed_precision_dtype is not None)

    # ---- reporting -----------------------------------------------------------------------------------
    def memory_summary(self) -> dict[str, float | int]:
        """Totals over :attr:`memory_log`: sequences, memory updates and their seconds, tokens seen, mean
        keys held per KV head (weighted by tokens seen), peak keys held and peak KV bytes."""
        log = self.memory_log
        seen = sum(s.tokens_seen for s in log)
        return {
            "sequences": len(log),
            "n_updates": sum(s.n_updates for s in log),
            "update_seconds": sum(s.update_seconds for s in log),
            "tokens_seen": seen,
            "mean_kept": sum(s.mean_kept * s.tokens_seen for s in log) / max(seen, 1),
            "peak_kept": max((s.peak_kept for s in log), default=0.0),
            "peak_kv_bytes": max((s.peak_kv_bytes for s in log), default=0),
        }

    def get_model_info(self) -> dict:
        """``HFLM``'s model info plus the resolved memory settings and :meth:`memory_summary`."""
        return {**super().get_model_info(), "namm_memory_args": asdict(self.memory),
                "namm_memory": self.memory_summary()}


def evaluate(model_args: str, tasks: list[str], include_path: str | None = None, limit: int | None = None,
             *, include_defaults: bool = True, **options: Any) -> dict:
    """Run lm-eval ``tasks`` with model ``namm`` and return ``lm_eval.simple_evaluate``'s results.

    Args:
        model_args: ``"pretrained=smollm2-135m,policy=h2o,cache_size=256,update_every=64"``.
        tasks: lm-eval task names (built-in ones, or defined in YAML files under ``include_path``).
        include_path: a folder of custom task YAML files.
        limit: examples per task (``None`` = all).
        include_defaults: also index lm-eval's ~15k built-in tasks (~4 s); False for local tasks only.
        **options: any other ``simple_evaluate`` argument (``num_fewshot``, ``log_samples``, ...).
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import simple_parse_args_string

    manager = TaskManager(include_path=include_path, include_defaults=include_defaults,
                          metadata=simple_parse_args_string(model_args))
    results = simple_evaluate(model=MODEL_NAME, model_args=model_args, tasks=list(tasks), limit=limit,
                              task_manager=manager, **options)
    if results is None:  # non-zero ranks of a distributed run
        return {}
    return dict(results)


def main() -> None:
    """The ``lm_eval`` command line with model ``namm`` registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
