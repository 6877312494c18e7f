"""Every objective on one text corpus, with the same tokens, model and seed: one table.

    python benchmarks/objectives/study.py            # trains what is missing, then measures
    python benchmarks/objectives/study.py --smoke    # everything at toy size (a minute)

Data: TinyStories (lowercased, ../shared/data/tinystories/tiny_stories_lowercase.txt)
through `dlm data` with a 4,096-token BPE (runs/objectives/text). Each objective trains
configs/NAME.json (only `objective` differs, and BD3-LM's block size); the judge is a
separate AR model (configs/judge.json: another seed, three times the tokens), never one
of the compared models. For each model:
- held-out likelihood with its kind (exact, or a bound with K draws and its standard
  error; `dlm.evaluation.likelihood.likelihood`) and bits per byte;
- unconditional samples (`DiffusionLM.unconditional_ids`: `--samples` texts of 124 tokens
  after a document boundary, temperature 1, float64 sampling; masked diffusion with the
  random commit rule, i.e. ancestral order) at 16/32/124 steps, each read up to its first
  eos: the judge's perplexity
  (± its standard error over the samples, delta method) and the mean per-sample token
  entropy (MDLM's and ReMDM's convention: low entropy flags repetitive samples that a
  low perplexity would flatter), and seconds per sample.
With `--chat`, the same objectives on the chat mix (DailyDialog + Dolly open-QA +
self-instruct seeds, `dlm data` as the README's chat mix; configs/chat-NAME.json, judge
configs/chat-judge.json): the held-out likelihood per reply token, and replies to
`--prompts` validation prompts (32 tokens, 32 steps, greedy, the same settings for every
objective) judged as `dlm eval` judges them (`dlm.evaluation.quality.generation_quality`): judged
perplexity ± s.e., unigram F1 against the human reply and its gap over a shuffled
reference ± s.e., empty replies, distinct-2, seconds per reply.
Writes results.json (chat.json) and README.md beside this file (or under --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from dlm import DataConfig, DiffusionLM, SampleConfig, prepare
from dlm.config import TrainConfig, load_train_config
from dlm.evaluation.likelihood import likelihood
from dlm.evaluation.metrics import mean_and_stderr, ratio_stderr
from dlm.evaluation.quality import generation_quality
from dlm.evaluation.report import held_out
from dlm.training.train import train

HERE = Path(__file__).parent
CONFIGS = HERE / "configs"
CORPUS = Path("../shared/data/tinystories/tiny_stories_lowercase.txt")
SHARED = Path("../shared/data")
CHAT_SOURCES = [str(SHARED / "dailydialog/train.zip"), str(SHARED / "dailydialog/validation.zip"),
                f"dolly={SHARED / 'dolly_open_qa/open_qa.jsonl'}",
                str(SHARED / "self_instruct/seed_tasks.jsonl")]
CHAT_MIX = {"dailydialog": 0.7, "dolly": 0.25, "seed_tasks": 0.05}
COMPARED = ["ar", "mdlm", "bd3lm-4", "sedd-absorbing", "sedd-uniform", "uniform",
            "continuous", "dual"]
STEPS = [16, 32, 124]  # 124: one token per step, the most a masked sampler uses
LENGTH = 124  # + the boundary token, within the 128 positions the models were trained on
# (block diffusion rounds the canvas up to whole blocks of 4)


def data(work: Path, chat: bool) -> Path:
    out = work / ("chatmix" if chat else "text")
    if not (out / "train").exists():
        if not SHARED.is_dir():
            raise SystemExit(f"{SHARED} is missing: this study reads ../shared/data")
        if chat:
            prepare(DataConfig(sources=CHAT_SOURCES, out_dir=str(out), mix=CHAT_MIX))
        else:
            prepare(DataConfig(sources=[str(CORPUS)], out_dir=str(out), vocab_size=4096))
    return out


def trained(name: str, work: Path, smoke: bool, chat: bool) -> tuple[Path, float | None]:
    """configs/NAME.json trained into `work` unless done there (resumed if interrupted);
    its training minutes when trained by this invocation."""
    cfg: TrainConfig = load_train_config(CONFIGS / f"{name}.json")
    cfg.data = [str(work / ("chatmix" if chat else "text"))]
    cfg.out_dir = str(work / name)
    if smoke:
        cfg.max_steps, cfg.eval_every, cfg.save_every, cfg.val_examples = 6, 3, 3, 64
    out = Path(cfg.out_dir)
    last = out / "last" / "config.json"
    if last.is_file() and json.loads(last.read_text())["step"] >= cfg.max_steps:
        return out, None
    started = time.perf_counter()
    train(TrainConfig(), resume=out) if last.is_file() else train(cfg)
    return out, (time.perf_counter() - started) / 60


def up_to_eos(row: list[int], eos_id: int) -> list[int]:
    """A sample's text: its tokens up to and including its first eos (a document, as a
    reply, ends there; what a canvas holds after it is no part of the text)."""
    return row[: row.index(eos_id) + 1] if eos_id in row else row


def judged(judge: DiffusionLM, samples: torch.Tensor) -> tuple[float, float]:
    """The judge's perplexity of (n, L) sample ids after the boundary token, each up to and
    including its first eos, ± its standard error over the samples (delta method on the
    pooled NLL). Counting the canvas after an eos would score a run of eos, which the judge
    never saw (its documents follow one another) and which AR decoding writes after one."""
    eos_id = judge.tokenizer.eos_id
    kept = [len(up_to_eos(r, eos_id)) for r in samples.tolist()]
    eos = torch.full((samples.shape[0], 1), eos_id)
    ids = torch.cat([eos, samples.cpu()], 1).to(judge.device)
    with torch.no_grad():
        logits = judge.model(ids[:, :-1]).float()
    nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    inside = torch.arange(samples.shape[1], device=nll.device)[None, :] < torch.tensor(
        kept, device=nll.device)[:, None]
    nlls, counts = (nll * inside).sum(1).tolist(), kept
    ppl = math.exp(sum(nlls) / sum(counts))
    return ppl, ppl * ratio_stderr(nlls, counts)


def token_entropy(row: list[int]) -> float:
    counts = Counter(row)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def samples_row(lm: DiffusionLM, judge: DiffusionLM, steps: int, n: int) -> dict:
    config = SampleConfig(length=LENGTH, steps=steps, temperature=1.0, rule="random",
                          trim_eos=False, seed=0)
    started = time.perf_counter()
    ids = lm.unconditional_ids(n, config)
    seconds = (time.perf_counter() - started) / n
    ppl, ppl_se = judged(judge, ids)
    eos_id = lm.tokenizer.eos_id
    texts = [[t for t in up_to_eos(r, eos_id) if t != eos_id] for r in ids.tolist()]
    entropy, entropy_se = mean_and_stderr([token_entropy(t) for t in texts if t] or [0.0])
    return {"steps": steps, "gen_ppl": ppl, "gen_ppl_se": ppl_se, "entropy": entropy,
            "entropy_se": entropy_se, "seconds_per_sample": seconds,
            "mean_tokens": statistics.mean(len(t) for t in texts),
            "example": lm.tokenizer.decode(texts[0])[:300]}


def measured(name: str, run: Path, judge: DiffusionLM, n: int, draws: int) -> dict:
    """The row of one model, kept beside its run (run/measured.json) so that an interrupted
    study measures only what is missing: the likelihood is reused when it was measured
    with the same draws, the samples when with the same settings and scoring."""
    settings = {"samples": n, "draws": draws, "steps": STEPS, "scoring": "to first eos"}
    cached = run / "measured.json"
    old = json.loads(cached.read_text()) if cached.is_file() else {}
    if old.get("settings") == settings:
        return old["row"]
    lm = DiffusionLM.load(run)
    row = old.get("row", {})
    if "nats_per_token" not in row or (row["bound"] and row["draws"] != draws):
        row = likelihood_row(name, lm, draws)
    steps = [LENGTH] if lm.objective.one_call_per_token else STEPS
    samples = []
    for s in steps:
        started = time.perf_counter()
        samples.append(samples_row(lm, judge, s, n))
        print(f"{name}: {n} samples at {s} steps in {time.perf_counter() - started:.0f} s",
              flush=True)
    row = {**row, "samples": samples}
    cached.write_text(json.dumps({"settings": settings, "row": row}, indent=1) + "\n")
    return row


def likelihood_row(name: str, lm: DiffusionLM, draws: int) -> dict:
    started = time.perf_counter()
    val, _, _, cfg = held_out(lm, None, 1000)
    lk = likelihood(lm, val, draws, cfg.batch_size, cfg.seed, cfg.diffusion.schedule,
                    cfg.diffusion.eps)
    print(f"{name}: likelihood {lk.nats_per_token:.3f} in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return {"name": name, "objective": lm.objective.name, "summary": lm.objective.summary,
            "parameters": lm.model.num_parameters(), "nats_per_token": lk.nats_per_token,
            "stderr": lk.stderr, "draws": lk.draws, "bound": lk.is_bound,
            "bits_per_byte": lk.bits_per_byte, "tokens": lk.tokens,
            "text_bytes": lk.text_bytes, **second_figure(lm, val, cfg, draws)}


def second_figure(lm: DiffusionLM, val, cfg, draws: int) -> dict:
    """A dual model's diffusion-half bound (its held-out figure is the exact AR NLL)."""
    if not hasattr(lm.objective, "diffusion_bound"):
        return {}
    ctx = dataclasses.replace(lm.context, diffusion=cfg.diffusion, batch_size=cfg.batch_size,
                              seed=cfg.seed)
    bound = lm.objective.diffusion_bound(ctx, val, draws)
    return {"diffusion_bound": bound.nats_per_token, "diffusion_bound_se": bound.stderr}


def self_speculative(lm: DiffusionLM, histories: list, config: SampleConfig) -> dict:
    """A dual model's replies by its own AR decoding and by drafting and verifying itself
    (the default): seconds per reply of each, forwards, and whether they are identical."""
    if not hasattr(lm.objective, "diffusion_bound"):
        return {}
    from dlm.bench.speculative import causal_reply_ids

    decoders = {"ar": lambda on_step: causal_reply_ids(lm, histories, config, on_step),
                "self-speculative": lambda on_step: lm.reply_ids(histories, config, on_step)}
    timings, outputs, forwards = {}, {}, {}
    for name, decode in decoders.items():
        started = time.perf_counter()
        last = []
        outputs[name] = decode(last.append)
        timings[name] = time.perf_counter() - started
        forwards[name] = last[-1].nfe if last[-1].nfe else last[-1].step_index
    same = sum(bool(torch.equal(a, b)) for a, b in zip(outputs["ar"],
                                                       outputs["self-speculative"], strict=True))
    return {"self_speculative": {"seconds": timings, "forwards": forwards,
                                 "identical": same, "rows": len(histories),
                                 "speedup": timings["ar"] / timings["self-speculative"]}}


def chat_row(name: str, run: Path, judge: DiffusionLM, prompts: int) -> dict:
    lm = DiffusionLM.load(run)
    val, histories, references, cfg = held_out(lm, None, 1000)
    lk = likelihood(lm, val, 8, cfg.batch_size, cfg.seed, cfg.diffusion.schedule,
                    cfg.diffusion.eps)
    scale = lm.objective.per_reply_token(1.0, val, lm.tokenizer)
    step = max(len(histories) // prompts, 1)
    histories, references = histories[::step][:prompts], references[::step][:prompts]
    config = SampleConfig(length=32, steps=32, eos="defer")
    quality, replies = generation_quality(lm, histories, config, judge, references=references)
    extra = {f"{k}_per_reply_token" if k.startswith("diffusion_bound") else k: v * scale
             for k, v in second_figure(lm, val, cfg, 8).items()}
    extra.update(self_speculative(lm, histories, config))
    return {"name": name, "objective": lm.objective.name, **extra,
            "reply_nats": lk.nats_per_token * scale, "reply_nats_se": lk.stderr * scale,
            "bound": lk.is_bound, "draws": lk.draws, **dataclasses.asdict(quality),
            "seconds_per_reply": quality.seconds / len(histories),
            "examples": [{"prompt": h[-1]["content"], "reply": r, "reference": ref}
                         for h, r, ref in zip(histories[:3], replies[:3], references[:3],
                                              strict=False)]}


def chat_report(results: dict) -> str:
    lines = ["## The same objectives on the chat mix", "",
             f"Data: {results['data']}; judge: {results['judge']}; {results['prompts']} "
             "validation prompts, replies of 32 tokens in 32 steps, greedy, the same "
             "settings for every objective.", "",
             "| objective | likelihood per reply token | judged PPL | F1 | F1 − shuffled | "
             "empty | distinct-2 | s/reply |", "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        kind = f" ± {r['reply_nats_se']:.3f} (bound, K = {r['draws']})" if r["bound"] \
            else " (exact)"
        lines.append(f"| {r['name']} | {r['reply_nats']:.3f}{kind} | {r['gen_ppl']:.1f} ± "
                     f"{r['gen_ppl_se']:.1f} | {r['f1']:.3f} | {r['relevance_gap']:+.3f} ± "
                     f"{r['relevance_gap_se']:.3f} | {r['empty']:.0%} | {r['distinct_2']:.3f} "
                     f"| {r['seconds_per_reply']:.3f} |")
    lines += dual_notes(results["rows"])
    lines += ["", "First reply of each (prompt → reply; human reply):", ""]
    for r in results["rows"]:
        e = r["examples"][0]
        lines.append(f"- **{r['name']}**: {e['prompt'][:80]!r} → {e['reply']!r} "
                     f"(human: {e['reference'][:80]!r})")
    return "\n".join(lines) + "\n"


def dual_notes(rows: list[dict]) -> list[str]:
    """The dual model's second figure and its decoding at identical output."""
    lines = []
    for r in rows:
        for unit in ("", "_per_reply_token"):
            if f"diffusion_bound{unit}" in r:
                lines += ["", f"{r['name']}: the likelihood above is its AR half's (exact); "
                          f"its diffusion half's bound is {r['diffusion_bound' + unit]:.3f} ± "
                          f"{r['diffusion_bound_se' + unit]:.3f} nats per "
                          f"{'reply ' if unit else ''}token."]
        if "self_speculative" in r:
            d = r["self_speculative"]
            lines += [f"{r['name']}: greedy replies by its own AR decoding "
                      f"{d['seconds']['ar']:.2f} s ({d['forwards']['ar']} forwards), by "
                      f"drafting and verifying itself {d['seconds']['self-speculative']:.2f} s "
                      f"({d['forwards']['self-speculative']} forwards): "
                      f"{d['speedup']:.2f}× the speed, {d['identical']}/{d['rows']} replies "
                      "identical."]
    return lines


def report(results: dict) -> str:
    lines = ["# Every objective on one corpus", "",
             f"Written by `python benchmarks/objectives/study.py` on {results['date']} "
             f"({results['machine']}). Data: {results['data']}. Judge: "
             f"{results['judge']}.", "",
             "| objective | likelihood, nats/token | kind | PPL | bits/byte | steps | "
             "judged PPL of samples | entropy | tokens before eos | s/sample |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        kind = f"bound, K = {r['draws']}" if r["bound"] else "exact"
        se = f" ± {r['stderr']:.3f}" if r["bound"] else ""
        ppl = ("≤ " if r["bound"] else "") + f"{math.exp(min(r['nats_per_token'], 50)):.1f}"
        for i, s in enumerate(r["samples"]):
            head = (f"| {r['name']} | {r['nats_per_token']:.3f}{se} | {kind} | {ppl} | "
                    f"{'≤ ' if r['bound'] else ''}{r['bits_per_byte']:.3f} |" if i == 0
                    else "| | | | | |")
            lines.append(f"{head} {s['steps']} | {s['gen_ppl']:.1f} ± {s['gen_ppl_se']:.1f} "
                         f"| {s['entropy']:.2f} ± {s['entropy_se']:.2f} | "
                         f"{s['mean_tokens']:.0f} | "
                         f"{s['seconds_per_sample']:.3f} |")
    lines += dual_notes(results["rows"])
    lines += ["", "Samples (the first of each model at its most steps, 300 characters):", ""]
    for r in results["rows"]:
        lines.append(f"- **{r['name']}**: {r['samples'][-1]['example']!r}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/objectives"))
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", nargs="*", help="measure only these models")
    parser.add_argument("--chat", action="store_true", help="the chat-mix comparison")
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()
    if args.smoke:
        args.samples, args.draws, args.prompts = 4, 2, 4
        STEPS[:] = [4, 8]
    torch.manual_seed(0)
    data(args.work, args.chat)
    prefix = "chat-" if args.chat else ""
    minutes = {}
    runs = {}
    for name in ["judge", *COMPARED]:
        runs[name], minutes[name] = trained(prefix + name, args.work, args.smoke, args.chat)
    judge = DiffusionLM.load(runs["judge"])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.chat:
        results = {"date": time.strftime("%Y-%m-%d"), "prompts": args.prompts,
                   "data": "the chat mix (" + ", ".join(CHAT_SOURCES) + f"; {CHAT_MIX})",
                   "judge": f"{runs['judge']} (configs/chat-judge.json)",
                   "training_minutes": minutes,
                   "rows": [chat_row(n, runs[n], judge, args.prompts)
                            for n in args.only or COMPARED]}
        (args.out / "chat.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.out / "chat.md").write_text(chat_report(results))
        print(chat_report(results))
        return
    names = args.only or COMPARED
    rows = [measured(n, runs[n], judge, args.samples, args.draws) for n in names]
    import platform

    results = {"date": time.strftime("%Y-%m-%d"),
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{torch.get_num_threads()} threads, torch {torch.__version__}",
               "data": f"{CORPUS} via `dlm data` (4,096-token BPE)",
               "judge": f"{runs['judge']} (configs/judge.json)",
               "training_minutes": minutes, "rows": rows,
               "median_seconds": statistics.median(s["seconds_per_sample"] for r in rows
                                                   for s in r["samples"])}
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "README.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
