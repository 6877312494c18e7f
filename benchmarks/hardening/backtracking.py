"""The backtracking pattern's time, before (Python's re, as the server ran request
patterns until RE2) and after (RE2 through the server's `linear_search`, and a whole
/v1/denoise request).

    python benchmarks/hardening/backtracking.py   # writes backtracking.json beside it
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from dlm.config import ServeConfig
from dlm.control.edit import linear_search
from dlm.server import create_app
from dlm.shipped import SHIPPED_DIR

PATTERN = r"(a+)+$"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    rows = []
    for n in (16, 18, 20, 22, 24):
        text = "a" * n + "!"
        rows.append({"engine": "python re", "chars": n + 1,
                     "seconds": timed(lambda t=text: re.search(PATTERN, t))})
    for n in (24, 30, 40, 10_000):
        text = "a" * n + "!"
        rows.append({"engine": "RE2", "chars": n + 1,
                     "seconds": timed(lambda t=text: linear_search(PATTERN, t))})
    from dlm.pipeline import DiffusionLM

    with TestClient(create_app(DiffusionLM.load(SHIPPED_DIR, "cpu"), ServeConfig())) as c:
        for n in (30, 40, 400):
            body = {"text": "a" * n + "!", "span": PATTERN}
            seconds = timed(lambda b=body: rows.append({"status": c.post(
                "/v1/denoise", json=b).status_code}))
            rows[-1].update({"engine": "dlm serve /v1/denoise (RE2)", "chars": n + 1,
                             "seconds": seconds})
    # each 2 more characters roughly quadruple Python's time: extrapolate to 30 and 40
    py = [r for r in rows if r["engine"] == "python re"]
    growth = (py[-1]["seconds"] / py[-3]["seconds"]) ** 0.25  # per character
    for n in (31, 41):
        rows.append({"engine": "python re (extrapolated)", "chars": n,
                     "seconds": py[-1]["seconds"] * growth ** (n - py[-1]["chars"])})
    out = Path(__file__).with_name("backtracking.json")
    out.write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        print(f"{r['engine']:32} {r['chars']:>6} chars  {r['seconds']:.6f} s"
              + (f"  HTTP {r['status']}" if "status" in r else ""))


if __name__ == "__main__":
    main()
