#!/usr/bin/env bash
# The whole reply-quality study on this CPU, in order (each step resumable):
#   1. the chat mix (runs/chatmix) as in the README, and the separate AR judge;
#   2. the padding variants and the AR baseline, 800 steps each, same seed and batches;
#   3. + the length head, + AR initialisation (400 AR steps + 400 diffusion steps);
#   4. the recipe of the shipped model and its AR twin (train to the budget);
#   5. the tables: the 800-step ablation (greedy, eos allow and defer), and the budget
#      models under every decoding of decode-sweep.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/reply-quality
judge=runs/rq/judge-ar
bash $here/train.sh judge-ar pad-eos pad-rainbow pad-eos_weight pad-batch ar-800 ar-400
bash $here/train.sh len-rainbow arinit-rainbow-len arinit-rainbow
bash recipes/chat-tiny/recipe.sh
bash recipes/chat-tiny/recipe.sh ar
python $here/report.py runs/rq/pad-eos runs/rq/pad-rainbow runs/rq/pad-eos_weight \
    runs/rq/pad-batch runs/rq/len-rainbow runs/rq/arinit-rainbow-len runs/rq/arinit-rainbow \
    runs/rq/ar-800 --judge $judge --prompts 256 --out $here/ablation-800
python $here/report.py runs/chat-tiny runs/chat-tiny-ar --judge $judge --prompts 256 \
    --decode "$(cat $here/decode-sweep.json)" --out $here/budget
