#!/usr/bin/env bash
# Five infill and five edit examples with their traces, on the `tiny` model pretrained on
# plain text and fine-tuned on the chat mix (benchmarks/runs/fine-pre). Greedy, so the
# output is the same on every run of the same checkpoint.
# Usage: bash benchmarks/sampling/examples.sh runs/fine-pre > benchmarks/sampling/examples.txt
set -u
ck=${1:-runs/fine-pre}
run() { echo "$ dlm $*"; dlm "$@" 2>&1; echo; }
card=$(mktemp --suffix=.json)
echo '{"name": "[MASK*2]", "mood": "[MASK]", "hobby": "[MASK*3]"}' > "$card"

echo "## infill"
run infill --ckpt "$ck" "The weather is [MASK] today, so [MASK*5] umbrella." --steps 8 --trace
run infill --ckpt "$ck" "Once upon a time there was a little [MASK] who loved to [MASK*3]." --steps 8 --trace
run infill --ckpt "$ck" "Tom went to the [MASK*?] to buy some [MASK*2] for his mom." --steps 8 --trace
run infill --ckpt "$ck" "I am [MASK*2], thank you. And [MASK*?4]?" --prompt "How are you?" --steps 8 --trace
run infill --ckpt "$ck" --template "$card" --steps 6 --trace
run infill --ckpt "$ck" "Yes, [MASK*?10]" --prompt "Are you coming to the party tonight?" --steps 10 --trace

echo "## edit"
run edit --ckpt "$ck" --text "I am so happy today, John!" --span happy --steps 2 --trace
run edit --ckpt "$ck" --text "Once upon a time there was a little girl who loved to play in the park." --span "play in the park" --steps 4 --trace
run edit --ckpt "$ck" --text "Yes, I finished it yesterday." --prompt "Have you finished your homework?" --span yesterday --new-length 3 --steps 3 --trace
run edit --ckpt "$ck" --text "The dog was very big and he liked to eat apples." --low-confidence 3 --steps 3 --trace
run edit --ckpt "$ck" --text "Sure, I can help you with that." --prompt "Can you help me find a cheap hotel?" --span 0:5 --steps 1 --trace

echo "## constraints"
run generate --ckpt "$ck" --prompt "Are you coming to the party tonight?" --eos ban --length 10 --steps 10 --force 0:Sorry --require tomorrow --trace
run generate --ckpt "$ck" --prompt "Are you coming to the party tonight?" --eos defer --steps 16 --remask 0.5 --trace
rm -f "$card"
