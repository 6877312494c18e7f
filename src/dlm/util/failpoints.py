"""Failpoints: named moments where a test can make this process die, as databases test
their recovery (kill -9 at a chosen instant, not only where a timer happens to land).

    DLM_FAILPOINT=checkpoint.renamed:3 dlm train ...   # SIGKILL at its 3rd passage there

Off unless DLM_FAILPOINT is set; a passage then costs one dictionary lookup. The points,
in the order a step and its save pass them:
- `train.step`: after the backward pass, before the optimiser step;
- `checkpoint.started`: the new checkpoint's temp folder made, nothing in it;
- `checkpoint.weights`: config and weights written, tokenizer and training state not;
- `checkpoint.written`: every file written and synced, nothing renamed yet;
- `checkpoint.renamed`: the old checkpoint moved aside, the new one not yet in place;
- `checkpoint.in_place`: the new one in place, the old copy still beside it;
- `checkpoint.saved`: the stale copies removed, the save complete.
"""

from __future__ import annotations

import os
import signal

POINTS = ("train.step", "checkpoint.started", "checkpoint.weights", "checkpoint.written",
          "checkpoint.renamed", "checkpoint.in_place", "checkpoint.saved")
_passages: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("DLM_FAILPOINT")
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return name, int(count or 1)


def passage(name: str) -> None:
    """Mark a passage through failpoint `name`; die here (SIGKILL) if it is the armed one."""
    armed = _armed()
    if armed is None or armed[0] != name:
        return
    _passages[name] = _passages.get(name, 0) + 1
    if _passages[name] == armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
