"""Export then import: the same logits, and `transformers` generating what dlm generates.

    python benchmarks/export/roundtrip.py ar=runs/c3/twin-ar shifted=src/dlm/models/chat-tiny \
        masked=runs/demo --prompts 20 --out benchmarks/export/roundtrip.json

Each checkpoint is written by `dlm export` (AR as LlamaForCausalLM, masked diffusion in
LLaDA's layout, shifted in Dream's) and read back by `DiffusionLM.load`: the largest
absolute logit difference on random ids. For the AR one, `transformers` loads the
export with no dlm code, renders each prompt with `apply_chat_template` and decodes with
greedy `generate`; dlm decodes the same prompts with temperature 0 and repetition penalty
1 (`dlm generate --temperature 0 --repetition-penalty 1`): identical replies are counted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from dlm import DiffusionLM
from dlm.bench.report import device_name, git_commit
from dlm.evaluation.report import held_out
from dlm.layouts.export import export


def logits_gap(lm, back) -> float:
    ids = torch.randint(10, lm.tokenizer.vocab_size, (4, 64),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((lm.model(ids) - back.model(ids)).abs().max())


def generate_both(lm, folder: Path, prompts: int) -> dict:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    _, histories, _, _ = held_out(lm, None, 100_000)
    histories = histories[::max(len(histories) // prompts, 1)][:prompts]
    config = lm.decoding(temperature=0.0, repetition_penalty=1.0)
    same, examples = 0, []
    for history in histories:
        ids = tok.apply_chat_template(history, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        ids = ids[-lm.max_prompt_len:]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=int(config.length),
                                 do_sample=False, eos_token_id=lm.tokenizer.eos_id,
                                 pad_token_id=lm.tokenizer.pad_id)
        theirs = tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        ours = lm.reply(history, config)
        same += theirs == ours
        if len(examples) < 5:
            examples.append({"prompt": history[-1]["content"], "dlm": ours,
                             "transformers": theirs})
    return {"prompts": len(histories), "identical": same, "examples": examples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="KIND=CKPT (ar, masked, shifted)")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/export/roundtrip.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlm-export-") as tmp:
        for spec in args.checkpoints:
            kind, path = spec.split("=", 1)
            lm = DiffusionLM.load(path, "cpu")
            folder, notes = export(lm, Path(tmp) / kind)
            back = DiffusionLM.load(folder, "cpu")
            row = {"kind": kind, "checkpoint": path, "layout": back.meta["imported"]["layout"],
                   "max_abs_logit_difference": logits_gap(lm, back), "left_out": notes}
            if kind == "ar":
                row["greedy"] = generate_both(lm, folder, args.prompts)
            rows.append(row)
            print(json.dumps(row)[:300])
    out = {"command": "python benchmarks/export/roundtrip.py " + " ".join(args.checkpoints)
           + f" --prompts {args.prompts} --out {args.out}", "commit": git_commit(),
           "cpu": device_name(torch.device("cpu")), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
