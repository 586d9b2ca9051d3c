#!/usr/bin/env bash
# The evaluation sweeps behind (run from the repository root; resumable) results/language_*.md and results/evolution.md (run in this order).
set -u
export HF_HUB_OFFLINE=1
N=".venv/bin/namm run --adapter language --model smollm2-135m --update-every 64"
BASE="full,h2o,keynorm,streaming,snapkv,tova,random"
sweep() {  # task length seeds sizes out
  $N --task $1 --length $2 --seed $3 --cache-size $4 --policy $BASE --out $5
  $N --task $1 --length $2 --seed $3 --cache-size $4 --policy namm --namm-checkpoint none --out $5
  $N --task $1 --length $2 --seed $3 --cache-size $4 --policy namm --namm-checkpoint checkpoints/namm_smollm2 --out $5
  $N --task $1 --length $2 --seed $3 --cache-size $4 --policy namm --namm-checkpoint checkpoints/namm_smollm2 --selection threshold --out $5
  $N --task $1 --length $2 --seed $3 --cache-size $4 --policy namm --namm-checkpoint checkpoints/namm_random --out $5
}
sweep passkey 1024 0,1 128,256,512 results/language_passkey.jsonl
sweep passkey 512 0,1 64,128,256 results/language_passkey512.jsonl
sweep variable_tracking 512 0,1,2,3,4,5,6,7,8,9 64,128,256 results/language_variable_tracking.jsonl
echo SWEEPS DONE
