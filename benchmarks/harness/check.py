"""dlm's lm-eval adapter against lm-eval's own `hf` backend, on the same weights.

    python benchmarks/harness/check.py --limit 100 --out benchmarks/harness/check.json

A tiny random Llama built with `transformers` (`tests/hf_folders.py`, 2048 positions so
neither side cuts a context) is evaluated on the local tasks twice: loaded into dlm and
run through `DLMHarness` (plain text, as lm-eval's backend encodes it), and through
`lm_eval`'s `hf` backend. Per request: the largest absolute and relative difference of
the log-likelihoods; per task: both backends' metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.*

from dlm.bench.report import device_name, git_commit  # noqa: E402
from tests.test_harness import long_llama, per_request  # noqa: E402

TASKS = ["dlm_dailydialog_next", "dlm_wikitext2_rolling", "dlm_tinystories_rolling"]


def main() -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from dlm.evaluation.harness import DLMHarness
    from dlm.evaluation.harness_tasks import TASKS_DIR

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/harness/check.json")
    args = ap.parse_args()
    os.environ.setdefault("DLM_DATA_DIR", "../shared/data")
    with tempfile.TemporaryDirectory(prefix="dlm-check-") as tmp:
        folder = long_llama(Path(tmp))
        common = dict(tasks=TASKS, limit=args.limit, log_samples=True,
                      task_manager=TaskManager(include_path=str(TASKS_DIR),
                                               include_defaults=False))
        start = time.time()
        ours = lm_eval.simple_evaluate(model=DLMHarness(pretrained=str(folder), chat=False,
                                                        batch_size=8), **common)
        ours_s = time.time() - start
        start = time.time()
        theirs = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={folder},"
                                         "dtype=float32", device="cpu", batch_size=8, **common)
        theirs_s = time.time() - start
    rows = []
    for task in TASKS:
        a, b = per_request(ours, task), per_request(theirs, task)
        diffs = [abs(x - y) for x, y in zip(a, b, strict=True)]
        metrics = {k: v for k, v in ours["results"][task].items() if "," in k
                   and "stderr" not in k}
        rows.append({"task": task, "requests": len(a), "max_abs_diff": max(diffs),
                     "max_rel_diff": max(d / max(abs(y), 1e-9) for d, y in
                                         zip(diffs, b, strict=True)),
                     "within_1e-4": sum(d <= 1e-4 for d in diffs),
                     "largest_abs_loglikelihood": max(abs(y) for y in b),
                     "dlm": metrics,
                     "hf": {k: theirs["results"][task][k] for k in metrics}})
    import transformers

    out = {"command": f"python benchmarks/harness/check.py --limit {args.limit} "
                      f"--out {args.out}", "commit": git_commit(),
           "cpu": device_name(torch.device("cpu")), "lm_eval": lm_eval.__version__,
           "transformers": transformers.__version__, "seconds": {"dlm": round(ours_s, 1),
                                                                 "hf": round(theirs_s, 1)},
           "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(f"{r['task']}: {r['requests']} requests, max |Δ| {r['max_abs_diff']:.2e} "
              f"(relative {r['max_rel_diff']:.1e}), {r['within_1e-4']} within 1e-4; "
              f"dlm {r['dlm']} hf {r['hf']}")


if __name__ == "__main__":
    main()
