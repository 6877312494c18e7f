"""One imported model of each kind, LoRA-adapted, exported, and served: a streamed reply
through the official `openai` client, quoted.

    python benchmarks/lora/serve_each.py --out benchmarks/lora/serve.md

Tiny random folders in LLaDA's layout (masked diffusion), Dream's (shifted) and Llama's
(AR), written as in the tests (`tests/hf_folders.py`); each is adapted with LoRA (rank 4,
a few steps on made-up pairs: its own objective, LLaDA and Dream as masked diffusion,
Llama as AR), exported with `dlm export --merge`, and served by `dlm serve --ckpt` in a
subprocess; the weights start random, so replies are noise: what is shown is the path.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.*

from dlm import DiffusionLM, TrainConfig, train  # noqa: E402
from dlm.config import DiffusionConfig  # noqa: E402
from dlm.layouts.export import export  # noqa: E402
from dlm.server.load import free_port  # noqa: E402
from tests.hf_folders import write_folder  # noqa: E402

KINDS = {"llada": "diffusion", "dream": "diffusion", "llama": "ar"}



def stream(folder: Path) -> tuple[str, list]:
    import openai

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dlm", "serve", "--ckpt", str(folder),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                               max_retries=0)
        for _ in range(300):
            try:
                name = client.models.list().data[0].id
                break
            except openai.APIConnectionError:
                time.sleep(0.1)
        chunks = list(client.chat.completions.create(
            model=name, stream=True, max_tokens=8, extra_body={"steps": 4, "seed": 0},
            messages=[{"role": "user", "content": "hello how are you"}]))
    finally:
        server.terminate()
        server.wait(timeout=20)
    return name, chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/lora/serve.md")
    args = ap.parse_args()
    lines = ["# LoRA-adapted imported models, exported and served", "",
             f"Command: `python benchmarks/lora/serve_each.py --out {args.out}`.", ""]
    with tempfile.TemporaryDirectory(prefix="dlm-lora-serve-") as tmp:
        tmp = Path(tmp)
        data = tmp / "pairs.tsv"
        data.write_text("hello how are you\ti am fine thanks\nwhat is your name\tmy name is "
                        "today\n" * 20)
        for kind, objective in KINDS.items():
            folder, _ = write_folder(tmp / kind, kind)
            run = train(TrainConfig(
                data=[str(data)], init_from=str(folder), objective=objective, lora_rank=4,
                out_dir=str(tmp / f"{kind}-lora"), max_steps=4, batch_size=4, prompt_len=24,
                response_len=8, eval_every=4, save_every=4, val_examples=4,
                tensorboard=False, device="cpu", diffusion=DiffusionConfig(padding="eos")))
            lm = DiffusionLM.load(run.out_dir, "cpu")
            trained = sum(p.numel() for p in lm.model.parameters() if p.requires_grad)
            exported, _ = export(lm, tmp / f"{kind}-export", merge=True)
            name, chunks = stream(exported)
            deltas = [c.choices[0].delta.content for c in chunks if c.choices]
            lines += [f"## {kind} ({objective}; LoRA rank 4: {trained:,} trainable "
                      f"parameters) -> `dlm export --merge` -> `dlm serve --ckpt`", "",
                      f"Served as `{name}`; {len(chunks)} chunks, deltas {deltas!r}; "
                      f"finish_reason {chunks[-1].choices[0].finish_reason!r}.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
