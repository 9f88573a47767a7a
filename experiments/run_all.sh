#!/usr/bin/env bash
# Every experiment in order; each step resumes from ~/.cache/aimc_jax, so rerun after an interrupt.
#   nohup bash experiments/run_all.sh > run_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python experiments/finetune_glue.py
python experiments/main.py
python experiments/baseline.py
python experiments/compare.py
