"""`dlm serve --ckpt` on a tiny random LLaDA-layout folder, one streamed request through the
official `openai` client, quoted.

    python benchmarks/layouts/serve_imported.py --out benchmarks/layouts/serve.md

The folder is written as in the tests (`tests/hf_folders.py`: LLaDA's config keys and weight
names, a fast tokenizer with a chat template); the server is the `dlm serve` command in a
subprocess; the weights are random, so the reply's words are noise: what is shown is that
the door opens and streams.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.hf_folders

from dlm.server.load import free_port  # noqa: E402
from tests.hf_folders import write_folder  # noqa: E402


def main() -> None:
    import openai

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/layouts/serve.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlm-serve-") as tmp:
        folder, _ = write_folder(Path(tmp) / "llada-tiny", "llada")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "dlm", "serve", "--ckpt", str(folder),
                                   "--port", str(port)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                                   max_retries=0)
            for _ in range(300):
                try:
                    models = [m.id for m in client.models.list()]
                    break
                except openai.APIConnectionError:
                    time.sleep(0.1)
            request = dict(model=models[0], stream=True, max_tokens=12,
                           messages=[{"role": "user", "content": "hello how are you"}],
                           extra_body={"steps": 4, "seed": 0})
            chunks = list(client.chat.completions.create(**request))
        finally:
            server.terminate()
            log = server.communicate(timeout=20)[0]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    reply = "".join(d or "" for d in deltas)
    lines = ["# `dlm serve --ckpt` on an imported LLaDA-layout folder", "",
             f"Command: `python benchmarks/layouts/serve_imported.py --out {args.out}`.", "",
             "Server: `dlm serve --ckpt <tmp>/llada-tiny --port <free port>` (a tiny random "
             "model in LLaDA's layout: `model_type: llada`, OLMo-style weight names, its own "
             "tokenizer and chat template; no remote code). Client: the official `openai` "
             "package.", "", "```python",
             f"client.models.list()  # -> {models}",
             f"client.chat.completions.create(model={models[0]!r}, stream=True, max_tokens=12,",
             "    messages=[{'role': 'user', 'content': 'hello how are you'}],",
             "    extra_body={'steps': 4, 'seed': 0})", "```", "",
             f"{len(chunks)} chunks; their deltas, in order:", "", "```",
             *[repr(d) for d in deltas], "```", "",
             f"Joined reply: {reply!r} (random weights: noise by design); finish_reason "
             f"{chunks[-1].choices[0].finish_reason!r}.", "", "Server log (first lines):", "",
             "```", *[line for line in log.splitlines()[:8]], "```", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
