#!/usr/bin/env bash
# Speculative decoding on trained chat models, this CPU (benchmarks/speculative/README.md).
# Needs runs/chatmix and the shipped recipe's AR model (bash recipes/chat-tiny/recipe.sh ar),
# and the study's chat judge (python benchmarks/objectives/study.py --chat).
#   bash benchmarks/speculative/run.sh models    # train the verifiers, distill, train drafters
#   bash benchmarks/speculative/run.sh bench     # the two tables
#   bash benchmarks/speculative/run.sh d384      # the 13.8M verifier's pair, then its table
#     (needs only runs/chatmix and runs/text: recipes/chat-tiny/recipe.sh's first steps)
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/speculative/configs
train() { [ -f "$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['out_dir'])" "$1")/last/config.json" ] || dlm train --config "$1"; }
if [ "${1:-}" = models ]; then
    # tiny pair: the recipe's AR model given 192 positions, a drafter distilled from it
    train $here/verifier.json
    [ -f runs/spec/chatmix-distilled/data.json ] || dlm distill runs/chatmix \
        --teacher runs/spec/verifier --out runs/spec/chatmix-distilled --length 128 \
        --max-examples 20000 --batch-size 128
    train $here/drafter.json
    # the judge: the study's separately trained chat AR model given 192 positions
    train $here/judge.json
    # small pair: a 29.5M-parameter AR verifier, the tiny drafter distilled again from it
    train $here/verifier-small.json
    [ -f runs/spec/chatmix-distilled-small/data.json ] || dlm distill runs/chatmix \
        --teacher runs/spec/verifier-small --out runs/spec/chatmix-distilled-small \
        --length 128 --max-examples 6000 --max-validation 500 --batch-size 64
    train $here/drafter-small.json
fi
if [ "${1:-}" = bench ]; then
    dlm bench --preset none --generate tiny --ckpt runs/spec/drafter --ar-ckpt runs/spec/verifier \
        --judge runs/spec/judge --speculative 4 --speculative 8 --speculative 16 \
        --draft-window 0 --draft-window 16 --length 32 --length 128 --batch 1 --batch 8 \
        --name speculative-tiny --out-dir benchmarks/speculative
    # the same pair on 32 held-out prompts (the first 8 are the table above's)
    dlm bench --preset none --generate none --ckpt runs/spec/drafter --ar-ckpt runs/spec/verifier \
        --speculative 4 --speculative 8 --speculative 16 --draft-window 0 --draft-window 16 \
        --length 32 --length 128 --batch 1 --batch 8 --speculative-prompts 32 \
        --name speculative-tiny-32 --out-dir benchmarks/speculative
    dlm bench --preset none --generate none --ckpt runs/spec/drafter-small \
        --ar-ckpt runs/spec/verifier-small --speculative 8 --speculative 16 --repeats 2 \
        --draft-window 0 --draft-window 16 --length 32 --length 128 --batch 1 --batch 8 \
        --name speculative-small --out-dir benchmarks/speculative
fi
if [ "${1:-}" = d384 ]; then
    # a 13.8M-parameter AR verifier: text pretraining, then chat fine-tuning (~60 min)
    train $here/verifier-d384-pre.json
    train $here/verifier-d384.json
    # the shipped drafter distilled from its bfloat16 replies, the precision it verifies in
    [ -f runs/spec/chatmix-distilled-d384/data.json ] || dlm distill runs/chatmix \
        --teacher runs/spec/verifier-d384 --out runs/spec/chatmix-distilled-d384 --length 128 \
        --max-examples 40000 --max-validation 500 --batch-size 128 --dtype bfloat16
    train $here/drafter-d384.json
    # the judge of the plain samplers' table: a tiny AR model trained apart (seed 1)
    train $here/judge-d384.json
    dlm bench --preset none --generate none --ckpt runs/spec/drafter-d384 \
        --ar-ckpt runs/spec/verifier-d384 --speculative-dtype bfloat16 --speculative 4 \
        --speculative 8 --speculative 16 --draft-window 16 --draft-cache none \
        --draft-cache prefix --length 32 --length 128 --batch 1 --batch 8 --repeats 2 \
        --speculative-prompts 32 --name speculative-d384 --out-dir benchmarks/speculative
    # the plain diffusion samplers of the same drafter against the same AR, judged
    dlm bench --preset none --generate tiny --ckpt runs/spec/drafter-d384 \
        --ar-ckpt runs/spec/verifier-d384 --judge runs/spec/judge-d384 --length 32 \
        --length 128 --batch 1 --batch 8 --repeats 2 --name samplers-d384 \
        --out-dir benchmarks/speculative
    # the dual model at the verifier's size, started from it (TiDAR-style), decoding itself
    train $here/dual-d384.json
    dlm bench --preset none --generate none --ckpt runs/spec/dual-d384 --self-speculative \
        --length 32 --length 128 --batch 1 --batch 8 --repeats 2 --speculative-prompts 32 \
        --name self-speculative-d384 --out-dir benchmarks/speculative
fi
