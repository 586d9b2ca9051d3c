#!/usr/bin/env bash
# The GPU check of issue 16, prepared to fit in 8 minutes on one H200-class GPU:
#  1. the `gpu` tests (full cache = plain model in bf16, eviction = masking, NAMM features/scores bf16 vs fp32);
#  2. a Llama-3-8B-shaped random-weight model in bf16 at 8k and 32k tokens: prefill, decode, peak memory and
#     memory-update overhead of every policy against plain transformers SDPA (benchmarks/hook_speed.py).
# Writes results/benchmarks_gpu.md (each length is written as soon as it is measured).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
OUT=results/benchmarks_gpu.md
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

timeout 120 "$PY" -m pytest -q -m gpu tests/test_gpu.py | tee "$TMP/tests.txt"
for LENGTH in 8192 32768; do
  timeout 170 "$PY" -m benchmarks.hook_speed --random llama3-8b --device cuda --dtype bf16 \
    --lengths "$LENGTH" --steps 32 --out "$TMP/$LENGTH.md"
  {
    cat "$TMP/8192.md"
    [ -f "$TMP/32768.md" ] && { echo; sed -n '/^| tokens/,$p' "$TMP/32768.md"; }
    echo; echo '## gpu tests'; echo; echo '```'; tail -3 "$TMP/tests.txt"; echo '```'
  } > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
done
echo "wrote $OUT"
