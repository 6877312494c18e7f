#!/usr/bin/env bash
# The shipped chat model on this 2-core CPU: AR pretraining on text, then chat fine-tuning
# as masked diffusion from that AR model (the shift operation, attention annealed from
# causal to full; AR initialisation measured better than diffusion from scratch at equal
# tokens), with rainbow padding and a length head.
#   bash recipes/chat-tiny/recipe.sh            # the diffusion model, exported into the package
#   bash recipes/chat-tiny/recipe.sh ar         # the AR baseline: the same pretraining, then
#                                               # AR fine-tuning on the same tokens
# Every step is resumable: rerunning skips finished runs and resumes an interrupted one.
set -euo pipefail
cd "$(dirname "$0")/../.."
kind=${1:-diffusion}
data=../shared/data
here=recipes/chat-tiny
mkdir -p runs
if [ ! -f runs/chatmix/data.json ]; then
    dlm data "$data/dailydialog/train.zip" "$data/dailydialog/validation.zip" \
        dolly="$data/dolly_open_qa/open_qa.jsonl" "$data/self_instruct/seed_tasks.jsonl" \
        --out runs/chatmix --mix dailydialog=0.7,dolly=0.25,seed_tasks=0.05
fi
if [ ! -f runs/text/data.json ]; then
    # WikiText-2's only file is named valid.txt, which would make it all validation
    ln -sf "$(realpath "$data/wikitext2/valid.txt")" runs/wikitext2.txt
    dlm data "$data/tinystories/tiny_stories.txt" "$data/tinystories/tiny_stories_lowercase.txt" \
        runs/wikitext2.txt "$data/tiny_shakespeare/input.txt" \
        --out runs/text --tokenizer runs/chatmix/tokenizer.json
fi
suffix=$([ "$kind" = ar ] && echo "-ar" || echo "")  # the AR pretraining is shared
run() {  # train a config to its end, resuming if a checkpoint is there
    local cfg=$1 out steps
    out=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['out_dir'])" "$cfg")
    steps=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['max_steps'])" "$cfg")
    if [ -f "$out/last/config.json" ]; then
        done_steps=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" \
            "$out/last/config.json")
        [ "$done_steps" -ge "$steps" ] && return 0
        dlm train --resume "$out"
    else
        dlm train --config "$cfg"
    fi
}
time run "$here/pretrain-ar.json"
time run "$here/finetune$suffix.json"
if [ "$kind" = diffusion ]; then
    python -c "from dlm.shipped import export; print(export('runs/chat-tiny', '$here/MODEL_CARD.md'))"
fi
