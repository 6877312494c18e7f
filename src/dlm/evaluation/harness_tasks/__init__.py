"""lm-evaluation-harness tasks on the local corpora (tag `dlm_local`), read at run time.

The YAML files here are task configs for lm-eval's `TaskManager(include_path=TASKS_DIR)`;
`utils` builds their documents from the corpora folder (`DLM_DATA_DIR`, by default
`../shared/data` against the working directory) and scores the generation task. No corpus
text is kept in the repository. lm-eval comes with dlm's `eval` extra.

May import: data, errors, and evaluation's own `metrics` (lm-eval, datasets and
rouge-score only inside functions).
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
"""The folder to pass as lm-eval's `include_path`."""

TAG = "dlm_local"
TASK_NAMES = ("dlm_dailydialog_next", "dlm_wikitext2_rolling", "dlm_tinystories_rolling",
              "dlm_seed_tasks_generate")
