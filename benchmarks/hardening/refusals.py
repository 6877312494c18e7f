"""Limits before work: each over-limit request of tests/test_server_hardening.py (one
list, shared) sent to an app on a tiny model, with the forward passes it cost.

    python benchmarks/hardening/refusals.py   # writes refusals.md beside it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the cases live with the test that asserts them

from dlm.config import ServeConfig  # noqa: E402
from dlm.server import create_app  # noqa: E402
from dlm.tokenizer import DLMTokenizer  # noqa: E402
from tests.conftest import PAIRS  # noqa: E402
from tests.server_util import tiny_lm  # noqa: E402
from tests.test_server_hardening import REFUSED, counting  # noqa: E402


def main() -> None:
    tok = DLMTokenizer.train([t for p in PAIRS for t in p] * 5, vocab_size=300)
    lines = ["# Limits before work", "",
             "Command: `python benchmarks/hardening/refusals.py` (the cases of "
             "`tests/test_server_hardening.py::REFUSED`, a tiny model with a context of "
             "128 tokens; limits max_tokens 64, max_steps 64, max_n 4, max_prompt_tokens 40 "
             "unless the row says otherwise).", "",
             "| route | request (shortened) | other limits | HTTP | param | forward passes |",
             "|---|---|---|---|---|---|"]
    for route, body, limits, _ in REFUSED:
        lm = counting(tiny_lm(tok))
        config = ServeConfig(**{**dict(max_tokens=64, max_steps=64, max_n=4,
                                       max_prompt_tokens=40), **limits})
        with TestClient(create_app(lm, config)) as client:
            r = client.post(route, json=body)
        shown = json.dumps(body)
        shown = shown if len(shown) < 70 else shown[:67] + "..."
        lines.append(f"| {route} | `{shown}` | {limits or ''} | {r.status_code} | "
                     f"{r.json()['error']['param']} | {lm.forwards} |")
    for content, what in ((b"x" * 70_000, "a 70 kB body"), (b"[" * 40 + b"]" * 40,
                                                             "JSON 40 levels deep")):
        lm = counting(tiny_lm(tok))
        with TestClient(create_app(lm, ServeConfig())) as client:
            r = client.post("/v1/chat/completions", content=content)
        lines.append(f"| /v1/chat/completions | {what} | | {r.status_code} | "
                     f"{r.json()['error']['param']} | {lm.forwards} |")
    out = Path(__file__).with_name("refusals.md")
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
