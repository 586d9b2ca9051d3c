"""The embedded tiny video-LLM: a LLaVA-style composite of a timm backbone, an MLP projector and a Llama LM.

Each frame (uint8 RGB, resized to ``frame_size``) goes through a timm backbone created with
``pretrained=False`` (``features_only``), its feature map is average-pooled to a ``grid × grid`` map, and
every cell becomes one visual token through a projector (LayerNorm, then a two-layer MLP) into the LM's
embedding space. A clip
of N frames is ``N · grid²`` visual tokens, fed to the LM as ``inputs_embeds`` after a BOS token and
before the question's word tokens; the LM answers with one word and EOS.

Everything is trained from scratch by ``scripts/train_video_llm.py``; the checkpoint is a folder with
``config.json`` (:class:`TinyVideoLLMConfig`), ``model.safetensors`` and the word-level tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from namm_suite.atomic import write_bytes_atomic

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
MODEL_TYPE = "namm-tiny-video-llm"


@dataclass
class TinyVideoLLMConfig:
    """Architecture of the tiny video-LLM.

    Attributes:
        vocab_size: word-level vocabulary (special tokens first: pad, unk, bos, eos).
        backbone: timm model name (created with ``pretrained=False, features_only=True``).
        feature_index: which ``features_only`` stage feeds the projector (stride 16 for ``test_convnext``).
        frame_size: frames are resized to ``frame_size × frame_size`` pixels.
        grid: the feature map is pooled to ``grid × grid``, i.e. ``grid²`` visual tokens per frame.
        hidden_size / layers / heads / kv_heads / intermediate_size: the Llama LM (GQA when kv_heads < heads).
        max_positions: RoPE positions the LM supports (visual + text tokens).
    """

    vocab_size: int
    backbone: str = "test_convnext"
    feature_index: int = 2
    frame_size: int = 32
    grid: int = 2
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 256
    max_positions: int = 4096

    def __post_init__(self) -> None:
        if self.grid <= 0 or self.frame_size < 16 * self.grid:
            raise ValueError(f"frame_size {self.frame_size} is too small for a {self.grid}x{self.grid} grid "
                             "at the backbone's stride 16")
        if self.heads % self.kv_heads or self.hidden_size % self.heads:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads} and divide "
                             f"hidden_size {self.hidden_size}")

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid


class TinyVideoLLM(nn.Module):
    """timm backbone → MLP projector → ``LlamaForCausalLM``.

    ``lm`` is an ordinary Hugging Face causal LM; load it with ``attn_implementation="namm"`` to put its KV
    cache under a memory policy (see :meth:`load`).
    """

    def __init__(self, config: TinyVideoLLMConfig, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        import timm
        from transformers import AutoModelForCausalLM, LlamaConfig

        self.config = config
        self.backbone = timm.create_model(config.backbone, pretrained=False, features_only=True,
                                          out_indices=(config.feature_index,))
        channels = self.backbone.feature_info.channels()[0]
        # LayerNorm first: raw backbone features are large and nearly equal for every frame (norms ~100 after
        # a few hundred steps without it), which left the visual tokens indistinguishable to the LM
        self.projector = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, config.hidden_size), nn.GELU(),
                                       nn.Linear(config.hidden_size, config.hidden_size))
        lm_config = LlamaConfig(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.kv_heads,
            max_position_embeddings=config.max_positions, tie_word_embeddings=True,
            # 1/sqrt(hidden) instead of Llama's 0.02: word embeddings then start as large as the visual tokens,
            # and the answer can use the question's words instead of drowning in visual tokens
            initializer_range=config.hidden_size**-0.5,
            pad_token_id=0, bos_token_id=2, eos_token_id=3,
        )
        self.lm = AutoModelForCausalLM.from_config(lm_config, attn_implementation=attn_implementation)

    def encode_frames(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Visual tokens of a batch of clips.

        Args:
            frames: uint8 RGB ``[B, N, H, W, 3]`` (or ``[N, H, W, 3]`` for one clip).
        Returns:
            float ``[B, N · grid², hidden_size]``, frame by frame, each frame's cells in row-major order.
        """
        frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        if frames.dim() == 4:
            frames = frames[None]
        if frames.dim() != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [B, N, H, W, 3] uint8 RGB, got {tuple(frames.shape)}")
        batch, n = frames.shape[:2]
        device = self.projector[1].weight.device
        pixels = frames.flatten(0, 1).permute(0, 3, 1, 2).to(device, torch.float32) / 255.0 - 0.5
        size = self.config.frame_size
        if pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        features = F.adaptive_avg_pool2d(self.backbone(pixels)[0], self.config.grid)  # [B·N, C, g, g]
        tokens = self.projector(features.flatten(2).transpose(1, 2))  # [B·N, g², E]
        return tokens.reshape(batch, n * self.config.tokens_per_frame, -1)

    def prompt_embeds(self, frames: torch.Tensor | np.ndarray, question_ids: torch.Tensor) -> torch.Tensor:
        """``inputs_embeds [B, 1 + N·grid² + Q, E]``: BOS, the visual tokens, then the question tokens.

        Args:
            frames: uint8 ``[B, N, H, W, 3]`` or ``[N, H, W, 3]``.
            question_ids: int ``[B, Q]`` word ids (no BOS).
        """
        visual = self.encode_frames(frames)
        embed = self.lm.get_input_embeddings()
        bos = torch.full((visual.shape[0], 1), self.lm.config.bos_token_id, device=visual.device)
        return torch.cat([embed(bos), visual, embed(question_ids.to(visual.device))], dim=1)

    def save(self, folder: Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (each file atomically)."""
        from safetensors.torch import save

        folder = Path(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()
                 if k != "lm.lm_head.weight"}  # tied to the input embeddings
        config = {"model_type": MODEL_TYPE, **dataclasses.asdict(self.config)}
        write_bytes_atomic(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
        write_bytes_atomic(folder / WEIGHTS_FILE, save(state, metadata={"format": "pt"}))

    @classmethod
    def load(cls, folder: Path, attn_implementation: str | None = None) -> TinyVideoLLM:
        """Load a checkpoint folder written by :meth:`save`, in eval mode, its LM with ``attn_implementation``
        (default: the namm hook, :data:`~namm_suite.attention.ATTN_IMPLEMENTATION`)."""
        from safetensors.torch import load_file

        from namm_suite.attention import ATTN_IMPLEMENTATION  # importing it registers the hook

        config = read_config(Path(folder))
        model = cls(config, attn_implementation=attn_implementation or ATTN_IMPLEMENTATION)
        missing, unexpected = model.load_state_dict(load_file(Path(folder) / WEIGHTS_FILE), strict=False)
        if unexpected or set(missing) - {"lm.lm_head.weight"}:
            raise ValueError(f"{folder}/{WEIGHTS_FILE} does not match {CONFIG_FILE}: missing {missing}, "
                             f"unexpected {unexpected}")
        model.lm.tie_weights()
        return model.eval()


def read_config(folder: Path) -> TinyVideoLLMConfig:
    """The :class:`TinyVideoLLMConfig` in ``folder/config.json`` (ValueError naming the file otherwise)."""
    path = folder / CONFIG_FILE
    data = json.loads(path.read_text())
    if data.pop("model_type", None) != MODEL_TYPE:
        raise ValueError(f"{path}: field 'model_type' must be {MODEL_TYPE!r}")
    try:
        return TinyVideoLLMConfig(**data)
    except TypeError as error:
        raise ValueError(f"{path}: {error}") from None


def is_tiny_video_llm(folder: Path) -> bool:
    """Whether ``folder`` holds a :class:`TinyVideoLLM` checkpoint (rather than a Hugging Face one)."""
    path = Path(folder) / CONFIG_FILE
    return path.is_file() and json.loads(path.read_text()).get("model_type") == MODEL_TYPE


def build_tokenizer(words: list[str]):
    """A lower-casing word-level ``PreTrainedTokenizerFast`` over ``words`` (special tokens first, ids 0–3:
    pad, unk, bos, eos; punctuation splits off as its own word). It adds no special tokens on encode."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word.lower(), len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")
