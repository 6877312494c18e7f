"""Results that travel: paths of the machine that wrote a result (its checkout, home and
temporary folders) are written relative to the repository, as `~`, or as `<tmp>`, so a
committed figure names no folder of one machine and reads the same on every other.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def machine_folders() -> list[tuple[str, str]]:
    """(folder, what to write instead), the most specific first: the checkout before the
    home or temporary folder that may hold it."""
    folders = [(str(REPOSITORY), "."), (str(Path.home()), "~"),
               (os.path.realpath(tempfile.gettempdir()), "<tmp>"),
               (tempfile.gettempdir(), "<tmp>")]
    return sorted({(f.rstrip("/"), r) for f, r in folders if f not in ("", "/")},
                  key=lambda fr: -len(fr[0]))


def portable(text: str) -> str:
    """`text` with every path under a machine folder rewritten (`/home/me/x` -> `~/x`,
    `<checkout>/benchmarks/a.json` -> `benchmarks/a.json`)."""
    for folder, instead in machine_folders():
        pattern = re.compile(re.escape(folder) + r"(?=/|\b)(/)?")
        if instead == ".":  # inside the repository: the relative path itself
            text = pattern.sub(lambda m: "" if m.group(1) else ".", text)
        else:
            text = pattern.sub(lambda m, r=instead: r + (m.group(1) or ""), text)
    return text
