#!/usr/bin/env bash
# The sweep behind results/video_synthetic.md (run from the repository root; resumable): the tiny video-LLM on
# the three synthetic video tasks, every baseline at 32/64/128 tokens per KV head (of ~265 prompt tokens), and
# the NAMM evolved on SmolLM2 for language applied zero-shot (plus its random-parameter control). --length is
# only the report's label here: a prompt is BOS + 64 frames x 4 visual tokens + 4-8 question words (261-265).
set -eu
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# one thread: on a loaded 2-core machine two OpenMP threads made each episode ~100x slower (12 s instead of 0.1 s)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
LIMIT=${LIMIT:-30}
OUT=${OUT:-results/video_synthetic}
N=".venv/bin/namm run --adapter video --model tiny-video-llm --task video_needle,video_count,video_order --update-every 32 --seed 0 --limit $LIMIT --length 263"
$N --policy full,namm --namm-checkpoint checkpoints/namm_smollm2 --out $OUT.jsonl
$N --policy namm --namm-checkpoint checkpoints/namm_random --out $OUT.jsonl
$N --policy h2o,keynorm,streaming,snapkv,tova,random --cache-size 32,64,128 --out $OUT.jsonl
.venv/bin/namm report $OUT.jsonl --out $OUT.md
