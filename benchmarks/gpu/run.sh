#!/usr/bin/env bash
# Everything that needs a GPU, in one prepared script: at most 8 minutes on one H100.
#   bash benchmarks/gpu/run.sh            # on a GPU; writes benchmarks/gpu/<device>.json, .md
#   bash benchmarks/gpu/run.sh --smoke    # the same steps at tiny shapes, on any device (CI)
# What it measures: benchmarks/gpu/measure.py's docstring.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python}" benchmarks/gpu/measure.py "$@"
