"""The equivalence table of issue 33: each layout imported by `DiffusionLM.load` from a
folder written with `transformers`' own classes and `save_pretrained` (LLaDA: LLaDA's
keys and names), against `transformers` on the same weights.

    python benchmarks/layouts/equivalence.py --out benchmarks/layouts/equivalence.json

Per layout: the largest absolute logit difference in float32 (the bidirectional layouts
against the class of the same math run with a full 4-D mask: Llama for LLaDA, Qwen2 for
Dream), the chat template's ids against `apply_chat_template` on three histories, and
for the AR layouts greedy decoding against `generate` (up to 40 tokens, within the
model's 128 positions, three prompts).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.hf_folders

from dlm import DiffusionLM  # noqa: E402
from dlm.bench.report import device_name, git_commit  # noqa: E402
from tests.hf_folders import VOCAB, write_folder  # noqa: E402

HISTORIES = [
    [{"role": "user", "content": "hello how are you"}],
    [{"role": "user", "content": "tell me a joke"}, {"role": "assistant", "content": "no"},
     {"role": "user", "content": "why not?"}],
    [{"role": "user", "content": "what is your name"}, {"role": "assistant",
                                                        "content": "i am fine thanks"},
     {"role": "user", "content": "good morning"}, {"role": "assistant", "content": "yes"},
     {"role": "user", "content": "where do we go now"}],
]


def ids_of(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def compare(kind: str, folder: Path) -> dict:
    import transformers

    folder, model = write_folder(folder, kind)
    lm = DiffusionLM.load(folder, "cpu")
    ids = torch.randint(0, VOCAB, (4, 64), generator=torch.Generator().manual_seed(0))
    bidirectional = not lm.model.config.causal
    with torch.no_grad():
        mask = torch.zeros(4, 1, 64, 64) if bidirectional else None
        diff = (lm.model(ids) - model(ids, attention_mask=mask).logits).abs().max().item()
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    template = [lm.tokenizer.encode_prompt(h) == ids_of(theirs.apply_chat_template(
        h, add_generation_prompt=True, tokenize=True)) for h in HISTORIES]
    row = {"layout": kind, "reading": "bidirectional" if bidirectional else "causal",
           "objective": lm.objective.name, "shift": lm.model.config.shift,
           "max_abs_logit_difference": diff, "template_identical": sum(template),
           "template_histories": len(template),
           "template_tokens": sum(len(lm.tokenizer.encode_prompt(h)) for h in HISTORIES)}
    if not bidirectional:
        same = tokens = 0
        for history in HISTORIES:
            prompt = torch.tensor([lm.tokenizer.encode_prompt(history)])
            n = min(40, lm.model.config.max_seq_len - prompt.shape[1])  # within its positions
            config = lm.decoding(temperature=0.0, repetition_penalty=1.0, length=n)
            ours = lm.reply_ids([history], config)[0].tolist()
            with torch.no_grad():
                out = model.generate(prompt, max_new_tokens=n, do_sample=False,
                                     eos_token_id=lm.tokenizer.end_ids,
                                     pad_token_id=lm.tokenizer.pad_id)
            want = out[0, prompt.shape[1]:].tolist()
            end = next((i for i, t in enumerate(want) if t in lm.tokenizer.end_ids),
                       len(want) - 1)
            same += ours[:end + 1] == want[:end + 1]
            tokens += end + 1
        row.update(greedy_identical=same, greedy_prompts=len(HISTORIES), greedy_tokens=tokens)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/layouts/equivalence.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlm-layouts-") as tmp:
        rows = [compare(kind, Path(tmp) / kind)
                for kind in ("llada", "dream", "llama", "qwen2", "qwen3")]
    import transformers

    out = {"command": f"python benchmarks/layouts/equivalence.py --out {args.out}",
           "commit": git_commit(), "cpu": device_name(torch.device("cpu")),
           "torch": torch.__version__, "transformers": transformers.__version__, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        greedy = (f", greedy {r['greedy_identical']}/{r['greedy_prompts']} identical "
                  f"({r['greedy_tokens']} tokens)" if "greedy_prompts" in r else "")
        print(f"{r['layout']}: {r['reading']}, max |Δlogit| {r['max_abs_logit_difference']:.1e}, "
              f"template {r['template_identical']}/{r['template_histories']}{greedy}")


if __name__ == "__main__":
    main()
