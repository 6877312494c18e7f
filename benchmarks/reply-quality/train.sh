#!/usr/bin/env bash
# Train the named configs of benchmarks/reply-quality/configs (or configs given by path,
# NAME.json) one after another (one heavy job at a time on this CPU); a run already
# finished is skipped, an interrupted one resumed.
set -euo pipefail
cd "$(dirname "$0")/../.."
for name in "$@"; do
    cfg="benchmarks/reply-quality/configs/$name.json"
    case "$name" in *.json) cfg=$name; name=$(basename "$name" .json) ;; esac
    out=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['out_dir'])" "$cfg")
    steps=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['max_steps'])" "$cfg")
    if [ -f "$out/last/config.json" ]; then
        done_steps=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$out/last/config.json")
        if [ "$done_steps" -ge "$steps" ]; then echo "$name: done ($done_steps steps)"; continue; fi
        echo "$name: resuming at step $done_steps"; dlm train --resume "$out"
    else
        echo "$name: training"; dlm train --config "$cfg"
    fi
done
