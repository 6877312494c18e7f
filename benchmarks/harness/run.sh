#!/usr/bin/env bash
# Issue 35's figures on this CPU, one after another (one heavy job at a time):
#   bash benchmarks/harness/run.sh SHIPPED AR_TWIN JUDGE
# SHIPPED: the shipped diffusion model (src/dlm/models/chat-tiny); AR_TWIN: its AR twin
# (recipes/chat-tiny/recipe.sh ar, or benchmarks/chat-budget/configs/twin-ar.json);
# JUDGE: an AR model trained apart (runs/rq/judge-ar).
set -euo pipefail
cd "$(dirname "$0")/../.."
shipped=$1 twin=$2 judge=$3
out=benchmarks/harness
export DLM_DATA_DIR=${DLM_DATA_DIR:-../shared/data}
for pair in "shipped=$shipped" "ar-twin=$twin"; do
    name=${pair%%=*} ckpt=${pair#*=}
    # the local tasks through lm-eval, K = 32 draws for the diffusion model; is_greedy
    # (greedy unmasking, one model call per continuation token) is not what these tasks
    # score, so it is not computed here
    dlm eval --ckpt "$ckpt" --harness dlm_local --harness-args mc_num=32,greedy_check=false --out "$out/$name"
    dlm eval --ckpt "$ckpt" --zero-shot pydoc --draws 32 --out "$out/$name"
done
# the Monte Carlo estimator's noise against its draws, on the multiple-choice task
for k in 1 8 32 128; do
    dlm eval --ckpt "$shipped" --harness dlm_dailydialog_next \
        --harness-args "mc_num=$k,greedy_check=false" --out "$out/draws-$k"
done
# MAUVE and judged perplexity with entropy, on 256 DailyDialog validation prompts
python benchmarks/chat-budget/ablation.py "shipped=$shipped" "ar-twin=$twin" \
    --data runs/c3/ddval --judge "$judge" --prompts 256 --out "$out/replies"
