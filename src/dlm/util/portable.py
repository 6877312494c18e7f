"""Results that travel: paths of the machine that wrote a result (its checkout, the work
folder that holds it and its siblings such as `../shared`, the home and temporary
folders) are written relative to the repository, as `~`, or as `<tmp>`, so a committed
figure names no folder of one machine and reads the same on every other.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]  # src/dlm/util/portable.py -> the checkout


def machine_folders() -> list[tuple[str, str]]:
    """(folder, what to write instead), the most specific first: the checkout before the
    work, home or temporary folder that may hold it. A folder named twice keeps its
    first replacement (a checkout in the home folder: its parent is `..`, not `~`)."""
    folders = [(str(REPOSITORY), "."), (str(REPOSITORY.parent), ".."),
               (str(Path.home()), "~"), (os.path.realpath(tempfile.gettempdir()), "<tmp>"),
               (tempfile.gettempdir(), "<tmp>")]
    chosen: dict[str, str] = {}
    for folder, instead in folders:
        if folder.rstrip("/"):  # never the root itself
            chosen.setdefault(folder.rstrip("/"), instead)
    return sorted(chosen.items(), key=lambda fr: -len(fr[0]))


def portable(text: str) -> str:
    """`text` with every path under a machine folder rewritten (`<home>/x` -> `~/x`,
    `<checkout>/benchmarks/a.json` -> `benchmarks/a.json`)."""
    for folder, instead in machine_folders():
        pattern = re.compile(re.escape(folder) + r"(?=/|\b)(/)?")
        if instead == ".":  # inside the repository: the relative path itself
            text = pattern.sub(lambda m: "" if m.group(1) else ".", text)
        elif instead == "..":  # beside it: relative to the repository too
            text = pattern.sub(lambda m: "../" if m.group(1) else "..", text)
        else:
            text = pattern.sub(lambda m, r=instead: r + (m.group(1) or ""), text)
    return text
