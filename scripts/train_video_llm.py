"""Train the embedded tiny video-LLM (``checkpoints/tiny_video_llm``) from scratch on synthetic clips.

Clips come from :mod:`namm_suite.tasks.video.clips` (needle, count, order) on a random stream disjoint from
the evaluation tasks', and go through the real file path: rendered, encoded to H.264 mp4 with PyAV, read
back with decord. A pool of decoded clips is kept in memory and ``--refresh`` of them are replaced by fresh
ones every step, so the model sees new clips all the time at a fraction of the encode/decode cost.

The loss is cross-entropy on the answer word and EOS only. Weights are written atomically every
``--save-every`` steps and at the end; a JSON line per ``--log-every`` steps goes to ``--log``; the
final validation accuracy (full cache, fresh clips from a third stream) is printed and logged.

    .venv/bin/python scripts/train_video_llm.py --steps 2600 --pool 600 \\
        --curriculum 4:400,12:400,24:400,40:300 --out checkpoints/tiny_video_llm

(the shipped checkpoint's command; ~20 min on one CPU thread, see results/video_training.md).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from namm_suite.adapters.video_model import TinyVideoLLM, TinyVideoLLMConfig, build_tokenizer
from namm_suite.tasks.video.clips import KINDS, TRAIN_STREAM, VALID_STREAM, VOCABULARY, clip_rng, make_clip
from namm_suite.tasks.video.frames import read_frames, write_video
from namm_suite.tasks.video.prompts import MC_WORDS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("checkpoints/tiny_video_llm"))
    parser.add_argument("--log", type=Path, default=Path("runs/train_video_llm/log.jsonl"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--curriculum", default="",
                        help="shorter clips first: 'FRAMES:STEPS,...' (e.g. 16:300,32:300), then --frames")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--pool", type=int, default=1200, help="decoded clips kept in memory")
    parser.add_argument("--refresh", type=int, default=2, help="pool clips replaced by fresh ones per step")
    parser.add_argument("--valid", type=int, default=100, help="validation clips per kind at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--log-every", type=int, default=50)
    return parser.parse_args()


class ClipSource:
    """Decoded clips ``(kind, frames uint8 [N, S, S, 3], question ids, answer id)`` through mp4 + decord."""

    def __init__(self, tokenizer, stream: int, seed: int, frames: int, size: int, folder: Path) -> None:
        self.tokenizer, self.stream, self.seed = tokenizer, stream, seed
        self.frames, self.size, self.folder, self.count = frames, size, folder, 0

    def next(self, kind: str) -> tuple[str, np.ndarray, list[int], int]:
        """The next clip of ``kind`` (``self.frames`` frames)."""
        clip = make_clip(kind, clip_rng(self.stream, self.seed, self.count), self.frames, self.size)
        self.count += 1
        path = write_video(self.folder / "clip.mp4", clip.frames)
        frames = read_frames(path, self.frames)
        question = self.tokenizer(clip.question, add_special_tokens=False).input_ids
        answer = self.tokenizer(clip.answer, add_special_tokens=False).input_ids
        if len(answer) != 1 or self.tokenizer.unk_token_id in question + answer:
            raise ValueError(f"clip words outside the vocabulary: {clip.question!r} -> {clip.answer!r}")
        return kind, frames, question, answer[0]


def batch_loss(model: TinyVideoLLM, items: list, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy on answer + EOS, and whether each answer word was predicted (bool ``[B]``)."""
    frames = torch.from_numpy(np.stack([item[1] for item in items]))
    lengths = [len(item[2]) for item in items]
    width = max(lengths) + 2
    text = torch.zeros(len(items), width, dtype=torch.long)
    for i, (_, _, question, answer) in enumerate(items):
        text[i, :len(question) + 2] = torch.tensor(question + [answer, eos])
    embeds = model.prompt_embeds(frames, text)
    hidden = model.lm.model(inputs_embeds=embeds).last_hidden_state
    offset = embeds.shape[1] - width  # BOS + visual tokens
    rows = torch.arange(len(items))
    where = torch.tensor([offset + n - 1 for n in lengths])  # the last question token predicts the answer
    logits = model.lm.lm_head(torch.stack([hidden[rows, where], hidden[rows, where + 1]], 1))  # [B, 2, V]
    targets = torch.stack([text[rows, where - offset + 1], text[rows, where - offset + 2]], 1)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return loss, logits[:, 0].argmax(-1) == targets[:, 0]


def schedule(curriculum: str, frames: int, steps: int) -> dict[int, int]:
    """``{first step: clip length}`` from ``'F1:S1,F2:S2'`` (S1 steps of F1 frames, ...), then ``frames``."""
    stages, step = {}, 1
    for part in filter(None, curriculum.split(",")):
        length, count = (int(x) for x in part.split(":"))
        stages[step] = length
        step += count
    stages[step] = frames
    if step > steps:
        raise ValueError(f"curriculum {curriculum!r} is longer than --steps {steps}")
    return stages


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer(VOCABULARY + MC_WORDS)
    model = TinyVideoLLM(TinyVideoLLMConfig(vocab_size=len(tokenizer), frame_size=args.size))
    n_params = sum(p.numel() for p in model.parameters())
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    kinds = list(KINDS)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch, open(args.log, "a") as log:
        source = ClipSource(tokenizer, TRAIN_STREAM, args.seed, args.frames, args.size, Path(scratch))
        stages = schedule(args.curriculum, args.frames, args.steps)
        pool: list = []
        print(f"{n_params} parameters; clip lengths by step: {stages}", flush=True)
        rng = np.random.default_rng(args.seed)
        window: dict[str, list[float]] = {k: [] for k in kinds}
        losses: list[float] = []
        model.train()
        for step in range(1, args.steps + 1):
            if step in stages:  # a new clip length: refill the pool
                source.frames = stages[step]
                pool = [source.next(kinds[i % len(kinds)]) for i in range(args.pool)]
                print(f"step {step}: pool of {args.pool} clips of {source.frames} frames "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
            for _ in range(args.refresh):
                slot = int(rng.integers(args.pool))
                pool[slot] = source.next(pool[slot][0])
            items = [pool[i] for i in rng.choice(args.pool, size=args.batch, replace=False)]
            lr = args.lr * min(1.0, step / args.warmup) * (0.55 + 0.45 * math.cos(math.pi * step / args.steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, correct = batch_loss(model, items, tokenizer.eos_token_id)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            for item, ok in zip(items, correct.tolist()):
                window[item[0]].append(float(ok))
            if step % args.log_every == 0 or step == args.steps:
                record = {"step": step, "loss": float(np.mean(losses)), "lr": lr,
                          "seconds": time.perf_counter() - start,
                          **{f"train_acc_{k}": float(np.mean(v)) if v else None for k, v in window.items()}}
                log.write(json.dumps(record) + "\n")
                log.flush()
                print(json.dumps(record), flush=True)
                window = {k: [] for k in kinds}
                losses = []
            if step % args.save_every == 0 or step == args.steps:
                model.save(args.out)
        model.eval()
        valid = ClipSource(tokenizer, VALID_STREAM, args.seed, args.frames, args.size, Path(scratch))
        accuracy = {}
        with torch.no_grad():
            for kind in kinds:
                hits = []
                for first in range(0, args.valid, 25):
                    items = [valid.next(kind) for _ in range(min(25, args.valid - first))]
                    hits.extend(batch_loss(model, items, tokenizer.eos_token_id)[1].tolist())
                accuracy[kind] = float(np.mean(hits))
        record = {"final": True, "steps": args.steps, "seconds": time.perf_counter() - start,
                  "parameters": n_params, "valid_accuracy": accuracy, "args": {k: str(v) for k, v in vars(args).items()}}
        log.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
