#!/usr/bin/env bash
# The shipped chat model from three hours of this 2-core CPU (issue 34; every choice measured
# in benchmarks/chat-budget/):
#   1. data: DailyDialog, the Chit-Chat Challenge (the chitchat-dataset package), Dolly
#      open_qa and the seed tasks, mixed 60/30/8/2; text for pretraining
#   2. pretrain: an AR model of 6.8M parameters (d256, 6 layers) on the text
#   3. teacher: that model fine-tuned on the chat mix, still AR
#   4. distill: the teacher's replies to the training prompts (sequence-level knowledge
#      distillation, Kim & Rush 2016), beside the human replies
#   5. student: a dual model (TiDAR: AR and block diffusion in one backbone, blocks of 8)
#      from the teacher, on the distilled mix (half teacher, half human replies); chosen
#      over MDLM and BD3-LM by pilots (benchmarks/chat-budget/README.md)
#   6. export: the student into the package (src/dlm/models/chat-small)
#
#   bash recipes/chat-small/recipe.sh       # all of it; rerun to resume where it stopped
#   bash recipes/chat-small/recipe.sh ar    # + the AR twin at equal compute: the teacher
#                                           #   trained on for the distill + student time
# Each phase's wall time is appended to runs/chat-small/phases.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=recipes/chat-small
runs=runs/chat-small
data=../shared/data
mkdir -p "$runs"

phase() {  # phase NAME COMMAND...: run it and append its wall time
    local name=$1 start
    shift
    start=$(date +%s)
    "$@"
    echo "{\"phase\": \"$name\", \"seconds\": $(( $(date +%s) - start )), \"at\": \"$(date -u +%FT%TZ)\"}" \
        >> "$runs/phases.jsonl"
}

train_to_end() {  # train a config to its last step, resuming an interrupted run
    bash benchmarks/reply-quality/train.sh "$1"
}

finished() {  # finished CONFIG: its run reached max_steps
    python - "$1" <<'PY'
import json, sys
from pathlib import Path
cfg = json.load(open(sys.argv[1]))
last = Path(cfg["out_dir"]) / "last" / "config.json"
sys.exit(0 if last.is_file() and json.loads(last.read_text())["step"] >= cfg["max_steps"] else 1)
PY
}

data_step() {
    # the 8k BPE of the chat-tiny recipe (committed beside this script), so the token ids
    # stay those the measurements used
    dlm data "$data/dailydialog/train.zip" "$data/dailydialog/validation.zip" chitchat \
        dolly="$data/dolly_open_qa/open_qa.jsonl" "$data/self_instruct/seed_tasks.jsonl" \
        --mix dailydialog=0.6,chitchat=0.3,dolly=0.08,seed_tasks=0.02 \
        --max-prompt-chars 20000 --tokenizer "$here/tokenizer.json" --out "$runs/chat"
    # WikiText-2's only file is named valid.txt, which would make it all validation
    ln -sf "$(realpath "$data/wikitext2/valid.txt")" "$runs/wikitext2.txt"
    dlm data "$data/tinystories/tiny_stories.txt" "$data/tinystories/tiny_stories_lowercase.txt" \
        "$runs/wikitext2.txt" "$data/tiny_shakespeare/input.txt" \
        --tokenizer "$here/tokenizer.json" --out "$runs/text"
}

distill_step() {
    # the teacher's replies at temperature 0.7 to 40,000 training prompts, and human replies
    # of other prompts as half of the whole (benchmarks/chat-budget/kd-share.md)
    dlm distill "$runs/chat" --teacher "$runs/teacher" --out "$runs/chat-kd" \
        --max-examples 40000 --max-validation 1000 --batch-size 256 --dtype bfloat16 \
        --temperature 0.7 --human-share 0.5
}

[ -f "$runs/chat/data.json" ] && [ -f "$runs/text/data.json" ] || phase data data_step
finished "$here/pretrain.json" || phase pretrain train_to_end "$here/pretrain.json"
finished "$here/teacher.json" || phase teacher train_to_end "$here/teacher.json"
[ -f "$runs/chat-kd/data.json" ] || phase distill distill_step
finished "$here/student.json" || phase student train_to_end "$here/student.json"
if [ "${1:-}" = ar ]; then
    finished "$here/ar-equal.json" || phase ar-equal train_to_end "$here/ar-equal.json"
else
    python -c "from dlm.shipped import export; print(export('$runs/student', '$here/MODEL_CARD.md'))"
fi
