"""The seed paper's questions (section 14), and one the field has raised since, answered
on this CPU by one script; each answer rests on a table and a plot written beside it.

    python benchmarks/questions/study.py              # the whole study (at most 2 hours)
    python benchmarks/questions/study.py --smoke      # every step at toy size (minutes)

Reuses the reply-quality runs where they fit (the shipped model and its AR twin, the
separate AR judge: `benchmarks/reply-quality/run-all.sh` makes them) and trains the
rest from `configs/` beside this file. Every run resumes or is skipped when finished.
Writes README.md (one section per question), results.json and one PNG per question.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path

from dlm import DataConfig, DiffusionLM, prepare
from dlm.config import TrainConfig, load_train_config
from dlm.defaults import chat_decoding
from dlm.eval_report import held_out
from dlm.metrics import self_bleu
from dlm.plots import _pyplot
from dlm.quality import generation_quality, samples_of
from dlm.train import Reporter, train

HERE = Path(__file__).parent  # where the report goes (smoke/ under --smoke)
CONFIGS = Path(__file__).parent / "configs"
SHIPPED, AR_TWIN = Path("runs/chat-tiny"), Path("runs/chat-tiny-ar")  # recipes/chat-tiny
JUDGE = Path("runs/rq/judge-ar")  # benchmarks/reply-quality/configs/judge-ar.json
DATA = Path("../shared/data")
SHOWN = 4  # prompts whose replies each section quotes


@dataclasses.dataclass
class Scale:
    prompts: int = 128
    steps_factor: float = 1.0
    quick: bool = False


class Snapshots(Reporter):
    """Keeps a copy of every checkpoint (for the grammar-vs-relevance question)."""

    def __init__(self, out: Path):
        self.out = out

    def on_save(self, step: int, path: Path) -> None:
        if path.name == "last":
            shutil.copytree(path, self.out / f"step-{step}", dirs_exist_ok=True)


def trained(name: str, scale: Scale, snapshots: bool = False) -> Path:
    """Train configs/NAME.json (scaled down under --smoke) unless it is done."""
    cfg: TrainConfig = load_train_config(CONFIGS / f"{name}.json")
    cfg.max_steps = max(4, int(cfg.max_steps * scale.steps_factor))
    cfg.eval_every = max(2, int(cfg.eval_every * scale.steps_factor))
    cfg.save_every = max(2, int(cfg.save_every * scale.steps_factor))
    if scale.quick:
        cfg.out_dir += "-smoke"
        cfg.val_examples = min(cfg.val_examples, 64)
    out = Path(cfg.out_dir)
    last = out / "last" / "config.json"
    if last.is_file() and json.loads(last.read_text())["step"] >= cfg.max_steps:
        return out
    reporter = Snapshots(out / "snapshots") if snapshots else None
    if last.is_file():
        train(TrainConfig(), reporter, resume=out)
    else:
        train(cfg, reporter)
    return out


def prompts_of(lm, n: int) -> tuple[list, list]:
    _, histories, references, _ = held_out(lm, None, 100_000)
    step = max(len(histories) // n, 1)
    return histories[::step][:n], references[::step][:n]


def measure(lm, histories, references, judge, **fields) -> dict:
    """Replies with the model's measured decoding defaults (`dlm.defaults`) and `fields`."""
    config = chat_decoding(lm, **fields)
    started = time.perf_counter()
    quality, replies = generation_quality(lm, histories, config, judge, references=references)
    return {**dataclasses.asdict(quality), "settings": fields,
            "seconds_per_reply": (time.perf_counter() - started) / len(histories),
            "replies": replies}


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown from rows: (header, key, format)."""
    head = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(format(r[k], f) if r.get(k) is not None else "—"
                              for _, k, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


QUALITY = [("judged PPL", "gen_ppl", ".1f"), ("unigram F1", "f1", ".3f"),
           ("shuffled F1", "f1_shuffled", ".3f"), ("distinct-2", "distinct_2", ".3f"),
           ("words", "mean_words", ".1f"), ("stutter", "stutter", ".1%"),
           ("broken end", "broken_end", ".1%")]


def plot(path: Path, xs, series: dict[str, list[float]], xlabel: str,
         lines: dict[str, dict[str, float]] | None = None, log_x: bool = False) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.4))
    for ax, (name, ys) in zip(axes if len(series) > 1 else [axes], series.items(),
                              strict=True):
        ax.plot(xs, ys, marker="o", label="diffusion")
        for label, values in (lines or {}).items():
            ax.axhline(values[name], linestyle="--", color="grey", label=label)
        ax.set(title=name, xlabel=xlabel)
        if log_x:
            ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def quotes(histories, references, named_replies: dict[str, list[str]]) -> str:
    out = []
    for i in range(0, len(histories), max(len(histories) // SHOWN, 1))[:SHOWN]:
        out.append(f"- **{histories[i][-1]['content'][:100]}** (human: "
                   f"{references[i][:80]})")
        out += [f"  - {name}: {replies[i][:120]!r}" for name, replies in named_replies.items()]
    return "\n".join(out)


def section(title: str, question: str, answer: str, body: str, plot_name: str,
            replies: str, limit: str) -> str:
    return (f"## {title}\n\n**Question.** {question}\n\n**Answer.** {answer}\n\n{body}\n\n"
            f"![{title}]({plot_name})\n\nReplies (the same prompts in every setting):\n\n"
            f"{replies}\n\n**What would change the answer.** {limit}\n")


def q_steps(lm, ar, judge, histories, references, scale: Scale) -> tuple[str, dict]:
    grid = [s for s in (1, 2, 4, 8, 16, 32, 48) if s <= lm.default_length]
    rows = [{"steps": s, **measure(lm, histories, references, judge, steps=s)} for s in grid]
    ar_row = measure(ar, histories, references, judge)
    best = min(r["gen_ppl"] for r in rows)
    enough = next(r["steps"] for r in rows if r["gen_ppl"] <= 1.05 * best)
    plot(HERE / "steps.png", grid, {k: [r[key] for r in rows] for k, key, _ in QUALITY[:4]},
         "denoising steps", {"AR twin": {k: ar_row[key] for k, key, _ in QUALITY[:4]}},
         log_x=True)
    answer = (f"Judged perplexity is within 5% of its best from {enough} steps of "
              f"{lm.default_length}; relevance and diversity "
              f"{'keep rising' if rows[-1]['f1'] > rows[-2]['f1'] else 'level off'} after.")
    body = table(rows, [("steps", "steps", "d"), *QUALITY]) + \
        f"\n\nAR twin (`{AR_TWIN}`): " + ", ".join(
            f"{h} {format(ar_row[k], f)}" for h, k, f in QUALITY)
    replies = quotes(histories, references, {f"{r['steps']} steps": r["replies"]
                                             for r in rows[::2]})
    text = section("1. How many denoising steps?", "How many denoising steps are actually "
                   "needed before quality stops improving?", answer,
                   f"Model: the shipped `{SHIPPED}` with its decoding defaults "
                   "(`dlm.defaults`: greedy, eos allow, repetition penalty 1.2, the canvas "
                   "sized by its length head, so steps beyond a reply's length change "
                   f"nothing); {len(histories)} validation prompts.\n\n" + body,
                   "steps.png", replies, "A larger model or a longer canvas needs more "
                   "steps before its tokens stop depending on each other; threshold "
                   "decoding spends them adaptively.")
    return text, {"rows": rows, "ar": ar_row}


def q_remask(lm, judge, histories, references) -> tuple[str, dict]:
    shares = (0.0, 0.1, 0.3)
    # equal model calls: the same steps; ReMDM's revisions happen within them
    rows = [{"remask": r, **measure(lm, histories, references, judge, remask=r)}
            for r in shares]
    plot(HERE / "remask.png", list(shares), {k: [r[key] for r in rows] for k, key, _ in
                                             (QUALITY[0], QUALITY[1], QUALITY[5])},
         "remask share (ReMDM), equal model calls")
    better = rows[1]["stutter"] < rows[0]["stutter"] and rows[1]["gen_ppl"] < rows[0]["gen_ppl"]
    answer = ("Remasking at equal model calls " + ("improves coherence (fewer stutters, "
              "lower judged perplexity)" if better else "adds noise more than it repairs "
              "(no fewer stutters or broken ends, no better judged perplexity)") + ".")
    body = table(rows, [("remask", "remask", ".1f"), *QUALITY])
    replies = quotes(histories, references, {f"remask {r['remask']}": r["replies"]
                                             for r in rows})
    return section("2. Does remasking help?", "Does remasking low-confidence tokens improve "
                   "coherence or only add noise?", answer, body, "remask.png", replies,
                   "Revision needs a model sure enough of its mistakes to find them; a "
                   "larger model, or more steps than tokens, gives it room."), {"rows": rows}


def dialogue_only() -> None:
    """DailyDialog alone, tokenized with the chat mix's tokenizer (comparable tokens)."""
    if not Path("runs/dd/data.json").is_file():
        prepare(DataConfig(sources=[str(DATA / "dailydialog" / "train.zip"),
                                    str(DATA / "dailydialog" / "validation.zip")],
                           out_dir="runs/dd", tokenizer="runs/chatmix/tokenizer.json"))


def q_mix(scale: Scale, judge) -> tuple[str, dict]:
    dialogue_only()
    runs = {"dialogue + instructions": trained("mix", scale, snapshots=True),
            "dialogue alone": trained("dd", scale)}
    curves = {name: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
              for name, run in runs.items()}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, rows in curves.items():
        ev = [r for r in rows if "val_nelbo_reply" in r]
        ax.plot([r["step"] for r in ev], [r["val_nelbo_reply"] for r in ev], marker="o",
                label=name)
    ax.set(xlabel="step", ylabel="val nats per reply token (own split)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "mix.png", dpi=100)
    plt.close(fig)
    lms = {name: DiffusionLM.load(run, "cpu") for name, run in runs.items()}
    histories, references = prompts_of(lms["dialogue + instructions"], scale.prompts // 2)
    rows = [{"data": name, "run": str(runs[name]),
             **measure(lm, histories, references, judge)} for name, lm in lms.items()]
    plateau = {name: [r["val_nelbo_reply"] for r in rows_ if "val_nelbo_reply" in r]
               for name, rows_ in curves.items()}
    gains = {name: v[len(v) // 2] - v[-1] for name, v in plateau.items()}
    answer = ("Over the second half of training the mix still improves by "
              f"{gains['dialogue + instructions']:.3f} nats per reply token against "
              f"{gains['dialogue alone']:.3f} for dialogue alone: "
              + ("it plateaus later." if gains["dialogue + instructions"] >
                 gains["dialogue alone"] else "it does not reduce the plateau."))
    body = table(rows, [("data", "data", "s"), *QUALITY])
    return section("3. Dialogue + instructions vs dialogue alone", "Does mixed dialogue plus "
                   "instruction data reduce the plateau compared with dialogue alone?",
                   answer, body, "mix.png", quotes(histories, references, {
                       r["data"]: r["replies"] for r in rows}),
                   "Equal tokens here are under one epoch of either set; with many epochs "
                   "the smaller dialogue-only set would overfit first."), {"rows": rows}


def q_vs_ar(scale: Scale, judge) -> tuple[str, dict]:
    rows = []
    for size in ("tiny", "d64"):
        for objective in ("diffusion", "ar"):
            run = trained(f"{size}-{objective}", scale)
            lm = DiffusionLM.load(run, "cpu")
            histories, references = prompts_of(lm, scale.prompts // 2)
            m = measure(lm, histories, references, judge)
            samples = [samples_of(lm, h, 4, chat_decoding(lm, temperature=1.0))
                       for h in histories[:8]]
            evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
                     if "val_nelbo_reply" in x or "val_nll_reply" in x]
            rows.append({"size": size, "objective": objective, "run": str(run),
                         "params": lm.model.num_parameters() / 1e6,
                         "likelihood": evals[-1].get("val_nelbo_reply",
                                                     evals[-1].get("val_nll_reply")),
                         "self_bleu": statistics.fmean(self_bleu(s) for s in samples), **m})
    plot(HERE / "vs-ar.png", [f"{r['size']}\n{r['objective']}" for r in rows],
         {"likelihood": [r["likelihood"] for r in rows], "judged PPL": [r["gen_ppl"] for r in
                                                                        rows],
          "unigram F1": [r["f1"] for r in rows]}, "model")
    won = [d["size"] for d, a in zip(rows[::2], rows[1::2], strict=True)
           if d["gen_ppl"] <= a["gen_ppl"] and d["f1"] >= a["f1"]]
    answer = ("At equal size, data and tokens the diffusion model " +
              ("matches or beats AR on judged quality and relevance at " + ", ".join(won)
               if won else "does not beat AR on judged quality and relevance at either size")
              + "; its likelihood is a bound, above AR's exact NLL.")
    body = table(rows, [("size", "size", "s"), ("objective", "objective", "s"),
                        ("params (M)", "params", ".2f"),
                        ("val nats/reply token", "likelihood", ".3f"), *QUALITY[:5],
                        ("self-BLEU", "self_bleu", ".1f"),
                        ("s/reply", "seconds_per_reply", ".3f")])
    return section("4. Diffusion vs AR at equal size and data", "Does a small Transformer "
                   "denoiser beat a similarly sized autoregressive baseline on the same data?",
                   answer, body, "vs-ar.png", "(see the reply-quality pages for replies)",
                   "MDLM closes the gap with scale and tokens; at a few million tokens AR's "
                   "exact left-to-right factorisation is the stronger prior."), {"rows": rows}


def q_relevance(scale: Scale, judge) -> tuple[str, dict]:
    run = trained("mix", scale, snapshots=True)
    snaps = sorted((run / "snapshots").glob("step-*"), key=lambda p: int(p.name[5:]))
    lm0 = DiffusionLM.load(snaps[0], "cpu")
    histories, references = prompts_of(lm0, scale.prompts // 2)
    rows = [{"step": int(s.name[5:]), **measure(DiffusionLM.load(s, "cpu"), histories,
                                                references, judge)} for s in snaps]
    plot(HERE / "relevance.png", [r["step"] for r in rows],
         {"judged PPL": [r["gen_ppl"] for r in rows], "F1 vs shuffled F1": [
             r["f1"] - r["f1_shuffled"] for r in rows]}, "training step")
    above = [r["step"] for r in rows if r["f1"] > r["f1_shuffled"] + 0.01]
    answer = ("Fluency (judged perplexity) improves first; relevance rises above the "
              f"shuffled-reference control by more than 0.01 F1 from step {above[0]}."
              if above else "Fluency improves, but relevance never rises 0.01 F1 above the "
              "shuffled-reference control: the replies are fluent, not yet relevant.")
    body = table(rows, [("step", "step", "d"), *QUALITY])
    return section("5. Grammar vs relevance", "Can validation samples separate surface "
                   "grammar from actual response relevance?", answer, body, "relevance.png",
                   quotes(histories, references, {f"step {r['step']}": r["replies"]
                                                  for r in rows[::2]}),
                   "Word-overlap F1 is a weak relevance signal for short chat replies; a "
                   "learned relevance judge would separate them sooner."), {"rows": rows}


def q_overfit(scale: Scale, judge) -> tuple[str, dict]:
    out = {}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for objective in ("diffusion", "ar"):
        run = trained(f"chatterbot-{objective}", scale)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        epoch_at = {r["step"]: r["epoch"] for r in rows if "epoch" in r}
        ev = [r for r in rows if "val_nelbo_reply" in r or "val_nll_reply" in r]
        key = "val_nelbo_reply" if objective == "diffusion" else "val_nll_reply"
        ax.plot([epoch_at.get(r["step"], 0) for r in ev], [r[key] for r in ev], marker="o",
                label=objective)
        best = min(ev, key=lambda r: r[key])
        lm = DiffusionLM.load(run, "cpu")  # best/
        histories, references = prompts_of(lm, scale.prompts // 4)
        out[objective] = {"best_epoch": epoch_at.get(best["step"], 0), "best": best[key],
                          "last": ev[-1][key], **measure(lm, histories, references, judge)}
    ax.set(xlabel="epochs", ylabel="val nats per reply token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "overfit.png", dpi=100)
    plt.close(fig)
    first = min(out, key=lambda k: out[k]["best_epoch"])
    answer = (f"{first} overfits first (best epoch {out[first]['best_epoch']:.0f} against "
              f"{out[[k for k in out if k != first][0]]['best_epoch']:.0f}).")
    rows = [{"objective": k, **v} for k, v in out.items()]
    body = table(rows, [("objective", "objective", "s"), ("best epoch", "best_epoch", ".0f"),
                        ("val at best", "best", ".3f"), ("val at end", "last", ".3f"),
                        *QUALITY[:5]])
    return section("6. Overfitting with little data", "In the demo's data-constrained regime "
                   "(a few hundred pairs, many epochs), which overfits first, diffusion or "
                   "AR, and how do their replies compare at each model's best epoch?",
                   answer, body, "overfit.png", quotes(histories, references, {
                       k: v["replies"] for k, v in out.items()}),
                   "Prabhudesai et al. report diffusion's advantage growing with repeated "
                   "epochs at larger scale; a tiny corpus and model may not show it."), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every step at toy size")
    args = parser.parse_args()
    scale = Scale(prompts=8, steps_factor=0.02, quick=True) if args.smoke else Scale()
    if args.smoke:  # its report must not replace the real one
        global HERE
        HERE = HERE / "smoke"
        HERE.mkdir(exist_ok=True)
    started = time.perf_counter()
    judge = DiffusionLM.load(JUDGE, "cpu")
    lm, ar = DiffusionLM.load(SHIPPED, "cpu"), DiffusionLM.load(AR_TWIN, "cpu")
    histories, references = prompts_of(lm, scale.prompts)
    sections, results = [], {}
    for name, fn in (("steps", lambda: q_steps(lm, ar, judge, histories, references, scale)),
                     ("remask", lambda: q_remask(lm, judge, histories, references)),
                     ("mix", lambda: q_mix(scale, judge)),
                     ("vs_ar", lambda: q_vs_ar(scale, judge)),
                     ("relevance", lambda: q_relevance(scale, judge)),
                     ("overfit", lambda: q_overfit(scale, judge))):
        text, data = fn()
        sections.append(text)
        results[name] = data
        print(f"{name}: done at {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    wall = (time.perf_counter() - started) / 60
    head = (f"# The seed paper's questions\n\nCommand: `python benchmarks/questions/study.py"
            f"{' --smoke' if args.smoke else ''}`; wall time {wall:.1f} min on a 2-core CPU "
            "(no GPU). Judge: the separate AR model `runs/rq/judge-ar`.\n")
    (HERE / "README.md").write_text("\n".join([head, *sections]))
    for data in results.values():  # the reply texts are in README.md; keep the figures
        for row in data.get("rows", []) if isinstance(data, dict) else []:
            row.pop("replies", None)
    (HERE / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
