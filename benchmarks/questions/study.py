"""The seed paper's questions (section 14), and one the field has raised since, answered
on this CPU by one script; each answer rests on a table and a plot written beside it.

    python benchmarks/questions/study.py                   # the whole study (< 2 hours)
    python benchmarks/questions/study.py --smoke           # every step at toy size (minutes)
    python benchmarks/questions/study.py --work runs/q2 --report runs/q2/report
    python benchmarks/questions/study.py --compare A/results.json B/results.json

Inputs it reuses (trained first when missing, by the scripts that own them): the shipped
chat model (`recipes/chat-tiny`, in the package), its AR twin (`recipe.sh ar`:
runs/chat-tiny-ar) and the separate AR judge (`benchmarks/reply-quality`:
runs/rq/judge-ar). Everything else is trained from `configs/` beside this file into
`--work`; a finished run is skipped, an interrupted one resumed. Writes README.md (one
section per question), results.json and one PNG per question into `--report`.

Noise. Every table gives the standard error over its prompts (±) of judged perplexity
and F1: the noise a comparison between two rows must clear. Training and greedy
decoding are seeded and run with deterministic CPU kernels, so a rerun on this machine
reproduces every figure but the timings; `--compare` checks two runs against that.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from dlm import DataConfig, DiffusionLM, prepare
from dlm.config import TrainConfig, load_train_config
from dlm.defaults import chat_decoding
from dlm.evaluation.likelihood import likelihood
from dlm.evaluation.metrics import self_bleu
from dlm.evaluation.plots import _pyplot
from dlm.evaluation.quality import generation_quality, samples_of
from dlm.evaluation.report import held_out
from dlm.shipped import shipped_checkpoint
from dlm.training.train import Reporter, train
from dlm.util.portable import portable

CONFIGS = Path(__file__).parent / "configs"
AR_TWIN = Path("runs/chat-tiny-ar")  # bash recipes/chat-tiny/recipe.sh ar
JUDGE = Path("runs/rq/judge-ar")  # benchmarks/reply-quality/configs/judge-ar.json
CHATMIX = Path("runs/chatmix")  # the chat mix both of those train on
DATA = Path("../shared/data")
SHOWN = 4  # prompts whose replies each section quotes
TIMING = ("seconds_per_reply", "seconds", "minutes")  # what a rerun does not reproduce
TRAINING: dict[str, tuple[float, bool]] = {}  # run -> (minutes training, trained now)


@dataclasses.dataclass
class Study:
    work: Path
    report: Path
    prompts: int = 128
    steps_factor: float = 1.0
    smoke: bool = False


class Snapshots(Reporter):
    """Keeps a copy of every checkpoint (for the grammar-vs-relevance question)."""

    def __init__(self, out: Path):
        self.out = out

    def on_save(self, step: int, path: Path) -> None:
        if path.name == "last":
            shutil.copytree(path, self.out / f"step-{step}", dirs_exist_ok=True)


def prerequisites() -> dict[str, float]:
    """Train the reused inputs that are missing, with the scripts that own them; returns
    the minutes each took (nothing when they were there)."""
    minutes = {}
    for name, done, command in (
            ("AR twin (and the chat mix)", AR_TWIN / "last" / "config.json",
             ["bash", "recipes/chat-tiny/recipe.sh", "ar"]),
            ("AR judge", JUDGE / "last" / "config.json",
             ["bash", "benchmarks/reply-quality/train.sh", "judge-ar"])):
        if not done.is_file():
            print(f"training the {name}: {' '.join(command)}", flush=True)
            started = time.perf_counter()
            subprocess.run(command, check=True)
            minutes[name] = (time.perf_counter() - started) / 60
    return minutes


def trained(name: str, study: Study, snapshots: bool = False) -> Path:
    """Train configs/NAME.json into the study's work folder (scaled down under --smoke)
    unless it is done there."""
    cfg: TrainConfig = load_train_config(CONFIGS / f"{name}.json")
    cfg.out_dir = str(study.work / name)
    cfg.max_steps = max(4, int(cfg.max_steps * study.steps_factor))
    cfg.eval_every = max(2, int(cfg.eval_every * study.steps_factor))
    cfg.save_every = max(2, int(cfg.save_every * study.steps_factor))
    if study.smoke:
        cfg.val_examples = min(cfg.val_examples, 64)
    out = Path(cfg.out_dir)
    last = out / "last" / "config.json"
    if last.is_file() and json.loads(last.read_text())["step"] >= cfg.max_steps:
        if name not in TRAINING:  # trained by an earlier invocation: its own log says how long
            rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            TRAINING[name] = (max(r.get("elapsed_s", 0) for r in rows) / 60, False)
        return out
    reporter = Snapshots(out / "snapshots") if snapshots else None
    started = time.perf_counter()
    if last.is_file():
        train(TrainConfig(), reporter, resume=out)
    else:
        train(cfg, reporter)
    TRAINING[name] = ((time.perf_counter() - started) / 60, True)
    return out


def prompts_of(lm, n: int, data: list[str] | None = None) -> tuple[list, list]:
    """`n` validation chats spread evenly over the split (of `data`, default the model's
    own data): their histories and the human replies."""
    _, histories, references, _ = held_out(lm, data, 100_000)
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


def held_out_likelihood(lm, data: list[str] | None = None, examples: int = 1000) -> dict:
    """The validation likelihood per reply token (diffusion: the NELBO bound, K = 8
    draws, with its standard error; AR: exact), on `data` (default the model's own)."""
    val, _, _, cfg = held_out(lm, data, examples)
    lk = likelihood(lm, val, 8, cfg.batch_size, cfg.seed, cfg.diffusion.schedule,
                    cfg.diffusion.eps)
    scale = lm.objective.per_reply_token(1.0, val, lm.tokenizer)
    return {"likelihood": lk.nats_per_token * scale, "likelihood_se": lk.stderr * scale,
            "kind": f"bound, K = {lk.draws}" if lk.is_bound else "exact"}


def cell(row: dict, key: str, fmt: str, se_key: str | None) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = format(value, fmt)
    if se_key and row.get(se_key) is not None:
        text += " ± " + format(row[se_key], fmt)
    return text


def table(rows: list[dict], columns: list[tuple]) -> str:
    """Markdown from rows: (header, key, format[, standard-error key])."""
    columns = [(*c, None) if len(c) == 3 else c for c in columns]
    head = "| " + " | ".join(c[0] for c in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(cell(r, k, f, se) for _, k, f, se in columns) + " |"
            for r in rows]
    return "\n".join([head, rule, *body])


QUALITY = [("judged PPL", "gen_ppl", ".1f", "gen_ppl_se"),
           ("unigram F1", "f1", ".3f", "f1_se"),
           ("F1 − shuffled F1", "relevance_gap", ".3f", "relevance_gap_se"),
           ("distinct-2", "distinct_2", ".3f"), ("words", "mean_words", ".1f"),
           ("stutter", "stutter", ".1%"), ("broken end", "broken_end", ".1%"),
           ("empty", "empty", ".1%")]
NOISE = ("± is the standard error over the prompts; a difference counts when it exceeds "
         "twice the two rows' errors combined (unpaired, so conservative). A rerun reproduces "
         "every figure but the timings (seeded; see `reproducibility.md`).")


def beyond_noise(a: dict, b: dict, key: str) -> bool:
    """Whether rows `a` and `b` differ in `key` by more than twice their joint error."""
    se = math.hypot(a.get(f"{key}_se") or 0.0, b.get(f"{key}_se") or 0.0)
    return abs(a[key] - b[key]) > 2 * se


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
            f"{NOISE}\n\n![{title}]({plot_name})\n\nReplies (the same prompts in every "
            f"setting):\n\n{replies}\n\n**What would change the answer.** {limit}\n")


def q_steps(study: Study, lm, ar, judge, histories, references) -> tuple[str, dict]:
    grid = [s for s in (1, 2, 4, 8, 16, 32, 48) if s <= lm.default_length]
    rows = [{"steps": s, **measure(lm, histories, references, judge, steps=s)} for s in grid]
    ar_row = measure(ar, histories, references, judge)
    plot(study.report / "steps.png", grid,
         {h: [r[k] for r in rows] for h, k, *_ in QUALITY[:5]}, "denoising steps",
         {"AR twin": {h: ar_row[k] for h, k, *_ in QUALITY[:5]}}, log_x=True)
    answer = answer_steps({"rows": rows, "ar": ar_row})
    body = (f"Model: the shipped `{lm.source}` with its decoding defaults (`dlm.defaults`: "
            "greedy, eos allow, repetition penalty 1.2, the canvas sized by its length head; "
            f"steps beyond a reply's length change nothing); {len(histories)} validation "
            "prompts of the chat mix.\n\n" + table(rows, [("steps", "steps", "d"), *QUALITY])
            + f"\n\nAR twin (`{AR_TWIN}`, the same pretraining and fine-tuning tokens): "
            + ", ".join(f"{h} {cell(ar_row, k, f, se)}" for h, k, f, se in
                        [(*c, None)[:4] for c in QUALITY]))
    replies = quotes(histories, references, {**{f"{r['steps']} steps": r["replies"]
                                                for r in rows[::2]},
                                             "AR twin": ar_row["replies"]})
    text = section("1. How many denoising steps?", "How many denoising steps are actually "
                   "needed before quality stops improving?", answer, body, "steps.png",
                   replies, "A larger model or a longer canvas needs more steps before "
                   "its tokens stop depending on each other; at this size replies are "
                   "about 10 words, so the curve flattens early.")
    return text, {"rows": rows, "ar": ar_row}


def q_remask(study: Study, lm, judge, histories, references) -> tuple[str, dict]:
    shares = (0.0, 0.1, 0.3)
    # equal model calls: the same steps; ReMDM's revisions happen within them
    rows = [{"remask": r, **measure(lm, histories, references, judge, remask=r)}
            for r in shares]
    plot(study.report / "remask.png", list(shares),
         {h: [r[k] for r in rows] for h, k, *_ in (QUALITY[0], QUALITY[1], QUALITY[5],
                                                   QUALITY[6])},
         "remask share (ReMDM), equal model calls")
    answer = answer_remask({"rows": rows})
    body = (f"Model: the shipped `{lm.source}`, its default steps, {len(histories)} "
            "validation prompts.\n\n" + table(rows, [("remask", "remask", ".1f"), *QUALITY]))
    replies = quotes(histories, references, {f"remask {r['remask']}": r["replies"]
                                             for r in rows})
    return section("2. Does remasking help?", "Does remasking low-confidence tokens improve "
                   "coherence or only add noise?", answer, body, "remask.png", replies,
                   "Revision needs a model sure enough of its mistakes to find them; a "
                   "larger model, or more steps than tokens, gives it room."), {"rows": rows}


def split_data() -> tuple[str, str]:
    """DailyDialog alone and the instruction sets alone, tokenized with the chat mix's
    tokenizer (comparable tokens). Each source is split as in the mix (per source, the
    same seed), so their validation chats are the mix's."""
    for out, sources in (("runs/dd", [DATA / "dailydialog" / "train.zip",
                                      DATA / "dailydialog" / "validation.zip"]),
                         ("runs/instructions", [f"dolly={DATA / 'dolly_open_qa/open_qa.jsonl'}",
                                                DATA / "self_instruct" / "seed_tasks.jsonl"])):
        if not Path(out, "data.json").is_file():
            prepare(DataConfig(sources=[str(s) for s in sources], out_dir=out,
                               tokenizer=str(CHATMIX / "tokenizer.json")))
    return "runs/dd", "runs/instructions"


def q_mix(study: Study, judge) -> tuple[str, dict]:
    dialogue, instructions = split_data()
    runs = {"dialogue + instructions": trained("mix", study, snapshots=True),
            "dialogue alone": trained("dd", study)}
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
    fig.savefig(study.report / "mix.png", dpi=100)
    plt.close(fig)
    lms = {name: DiffusionLM.load(run, "cpu") for name, run in runs.items()}
    rows, replies = [], {}
    anchor = lms["dialogue + instructions"]
    prompts = {kind: prompts_of(anchor, study.prompts // 4, [data])
               for kind, data in (("dialogue", dialogue), ("instructions", instructions))}
    for name, lm in lms.items():
        common = held_out_likelihood(lm, [dialogue], 1000 if not study.smoke else 64)
        for kind, (histories, references) in prompts.items():
            m = measure(lm, histories, references, judge)
            replies[(name, kind)] = m["replies"]
            rows.append({"data": name, "prompts": kind, "run": str(runs[name]), **common,
                         **m})
    gains = {}  # how much the bound still falls over the second half of the steps
    for name, rows_ in curves.items():
        ev = [r for r in rows_ if "val_nelbo_reply" in r]
        middle = min(ev, key=lambda r: abs(r["step"] - ev[-1]["step"] / 2))
        gains[name] = middle["val_nelbo_reply"] - ev[-1]["val_nelbo_reply"]
    answer = answer_mix({"rows": rows, "gains": gains})
    body = ("Both: the tiny preset, rainbow padding, 800 steps of 32 chats (equal tokens), "
            "seed 0; the mix's tokenizer for both. Likelihood: the NELBO bound per reply token "
            "on DailyDialog's validation split (common to both).\n\n"
            + table(rows, [("data", "data", "s"), ("prompts", "prompts", "s"),
                           ("DailyDialog val nats/reply token", "likelihood", ".3f",
                            "likelihood_se"), *QUALITY]))
    shown = "\n".join(f"\n{kind.capitalize()} prompts:\n\n" + quotes(
        *prompts[kind], {name: replies[(name, kind)] for name in lms}) for kind in prompts)
    return section("3. Dialogue + instructions vs dialogue alone", "Does mixed dialogue plus "
                   "instruction data reduce the plateau compared with dialogue alone?",
                   answer, body, "mix.png", shown,
                   "Equal tokens here are under one epoch of either set; with many epochs "
                   "the smaller dialogue-only set would overfit first."), {"rows": rows,
                                                                           "gains": gains}


def q_vs_ar(study: Study, judge) -> tuple[str, dict]:
    rows, replies = [], {}
    # the tiny diffusion model is the mix run of question 3 (the same config and seed)
    for size, objective, name in (("tiny", "diffusion", "mix"), ("tiny", "ar", "tiny-ar"),
                                  ("d64", "diffusion", "d64-diffusion"),
                                  ("d64", "ar", "d64-ar")):
        run = trained(name, study, snapshots=name == "mix")
        lm = DiffusionLM.load(run, "cpu")
        histories, references = prompts_of(lm, study.prompts // 2)
        m = measure(lm, histories, references, judge)
        replies[f"{size} {objective}"] = m["replies"]
        samples = [samples_of(lm, h, 4, chat_decoding(lm, temperature=1.0, seed=0))
                   for h in histories[:16]]
        rows.append({"size": size, "objective": objective, "run": str(run),
                     "params": lm.model.num_parameters() / 1e6,
                     **held_out_likelihood(lm, None, 1000 if not study.smoke else 64),
                     "self_bleu": statistics.fmean(self_bleu(s) for s in samples), **m})
    plot(study.report / "vs-ar.png", [f"{r['size']}\n{r['objective']}" for r in rows],
         {"val nats/reply token": [r["likelihood"] for r in rows],
          "judged PPL": [r["gen_ppl"] for r in rows], "unigram F1": [r["f1"] for r in rows]},
         "model")
    answer = answer_vs_ar({"rows": rows})
    body = ("Each pair: the same data (the chat mix), tokens (800 steps of 32 chats), seed "
            "and decoding defaults of its objective; tiny is the 1.9M preset, d64 is width "
            "64, 3 layers. Likelihood on the validation split: diffusion's NELBO bound "
            "(K = 8), AR's exact NLL; self-BLEU of 4 samples at temperature 1 for 16 prompts "
            "(higher: less diverse).\n\n"
            + table(rows, [("size", "size", "s"), ("objective", "objective", "s"),
                           ("params (M)", "params", ".2f"),
                           ("val nats/reply token", "likelihood", ".3f", "likelihood_se"),
                           ("kind", "kind", "s"), *QUALITY[:4],
                           ("self-BLEU", "self_bleu", ".1f"),
                           ("s/reply", "seconds_per_reply", ".3f")]))
    histories, references = prompts_of(DiffusionLM.load(study.work / "mix", "cpu"),
                                       study.prompts // 2)
    return section("4. Diffusion vs AR at equal size and data", "Does a small Transformer "
                   "denoiser beat a similarly sized autoregressive baseline on the same data?",
                   answer, body, "vs-ar.png", quotes(histories, references, replies),
                   "MDLM closes the gap with scale and tokens; at a few million tokens AR's "
                   "exact left-to-right factorisation is the stronger prior. Asked again at "
                   "the chat budget (issue 34: 6.85M parameters, the same data and the same "
                   "total CPU time, the teacher's included), with a dual model drafted by "
                   "diffusion from an AR teacher: benchmarks/chat-budget/README.md, section "
                   "8."), {"rows": rows}


def q_relevance(study: Study, judge) -> tuple[str, dict]:
    run = trained("mix", study, snapshots=True)
    snaps = sorted((run / "snapshots").glob("step-*"), key=lambda p: int(p.name[5:]))
    histories, references = prompts_of(DiffusionLM.load(snaps[0], "cpu"), study.prompts // 2)
    rows = [{"step": int(s.name[5:]), **measure(DiffusionLM.load(s, "cpu"), histories,
                                                references, judge)} for s in snaps]
    plot(study.report / "relevance.png", [r["step"] for r in rows],
         {"judged PPL": [r["gen_ppl"] for r in rows],
          "F1 − shuffled F1": [r["relevance_gap"] for r in rows]}, "training step")
    answer = answer_relevance({"rows": rows})
    body = (f"Run: `{run}` (question 3's mix model), a snapshot every 100 steps; "
            f"{len(histories)} validation prompts, its decoding defaults.\n\n"
            + table(rows, [("step", "step", "d"), *QUALITY[:2],
                           ("shuffled F1", "f1_shuffled", ".3f"), *QUALITY[2:]]))
    return section("5. Grammar vs relevance", "Can validation samples separate surface "
                   "grammar from actual response relevance?", answer, body, "relevance.png",
                   quotes(histories, references, {f"step {r['step']}": r["replies"]
                                                  for r in rows[1::2]}),
                   "Word-overlap F1 is a weak relevance signal for short chat replies; a "
                   "learned relevance judge would separate them sooner."), {"rows": rows}


def q_overfit(study: Study, judge) -> tuple[str, dict]:
    out, replies = {}, {}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for objective in ("diffusion", "ar"):
        run = trained(f"chatterbot-{objective}", study)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        epoch_at = {r["step"]: r["epoch"] for r in rows if "epoch" in r}
        key = "val_nelbo_reply" if objective == "diffusion" else "val_nll_reply"
        ev = [r for r in rows if key in r]
        ax.plot([epoch_at.get(r["step"], 0) for r in ev], [r[key] for r in ev], marker="o",
                label=objective)
        best = min(ev, key=lambda r: r[key])
        lm = DiffusionLM.load(run, "cpu")  # best/: the lowest validation loss
        histories, references = prompts_of(lm, study.prompts // 4)
        m = measure(lm, histories, references, judge)
        replies[f"{objective} (best epoch)"] = m["replies"]
        out[objective] = {"run": str(run), "best_epoch": epoch_at.get(best["step"], 0),
                          "best_step": best["step"], "best": best[key], "last": ev[-1][key],
                          "epochs": epoch_at.get(ev[-1]["step"], 0), **m}
    ax.set(xlabel="epochs", ylabel="val nats per reply token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(study.report / "overfit.png", dpi=100)
    plt.close(fig)
    answer = answer_overfit(out)
    rows = [{"objective": k, **v} for k, v in out.items()]
    body = ("Both: the embedded chatterbot corpus (about 850 training pairs), the tiny "
            "preset, 64 pairs a step, lr 3e-3, seed 0, the demo's short canvases; replies "
            "from each model's best/ checkpoint, judged by the chat-mix judge.\n\n"
            + table(rows, [("objective", "objective", "s"), ("best epoch", "best_epoch", ".0f"),
                           ("val at best", "best", ".3f"), ("val at end", "last", ".3f"),
                           *QUALITY[:5]]))
    return section("6. Overfitting with little data", "In the demo's data-constrained regime "
                   "(a few hundred pairs, many epochs), which overfits first, diffusion or "
                   "AR, and how do their replies compare at each model's best epoch?",
                   answer, body, "overfit.png", quotes(histories, references, replies),
                   "Prabhudesai et al. report diffusion's advantage growing with repeated "
                   "epochs at larger scale; a tiny corpus and model may not show it, and the "
                   "chat-mix judge scores the chatterbot style as off-domain."), out


# ---- the answers: pure functions of each question's figures (tests/test_questions_study.py)
def relevant(row: dict) -> bool:
    """F1 above the shuffled-reference control by more than two standard errors."""
    return row["relevance_gap"] > 2 * row["relevance_gap_se"]


def answer_steps(data: dict) -> str:
    rows, ar_row = data["rows"], data["ar"]
    best = min(rows, key=lambda r: r["gen_ppl"])
    enough = next(r for r in rows if not beyond_noise(r, best, "gen_ppl"))
    f1_flat = next(r for i, r in enumerate(rows)  # F1 no longer moves beyond its noise
                   if all(not beyond_noise(r, later, "f1") for later in rows[i:]))
    mid = {r["steps"]: r for r in rows}.get(16, rows[len(rows) // 2])
    fluency = (f"all of them: judged perplexity keeps falling to the last setting, one token "
               f"per step ({mid['steps']} steps: {mid['gen_ppl']:.1f}, {best['steps']}: "
               f"{best['gen_ppl']:.1f} ± {best['gen_ppl_se']:.1f})"
               if enough is rows[-1] else
               f"{enough['steps']}: judged perplexity is within noise of its best from there "
               f"({enough['gen_ppl']:.1f} ± {enough['gen_ppl_se']:.1f})")
    control = ("and never beats the shuffled-reference control by two standard errors"
               if not any(relevant(r) for r in rows) else
               "and beats the shuffled-reference control by two standard errors at "
               + ", ".join(str(r["steps"]) for r in rows if relevant(r)) + " steps")
    return (f"For fluency, {fluency}, while distinct-2 goes from {mid['distinct_2']:.2f} to "
            f"{rows[-1]['distinct_2']:.2f}. For relevance, {f1_flat['steps']} steps: F1 stops "
            f"moving beyond its noise there ({f1_flat['f1']:.3f}) {control}. The AR twin's "
            f"judged perplexity is {ar_row['gen_ppl']:.1f}.")


def answer_remask(data: dict) -> str:
    rows = data["rows"]
    base = rows[0]

    def verdict(r: dict) -> str:
        if not beyond_noise(r, base, "gen_ppl"):
            return "no change beyond the noise"
        return "better" if r["gen_ppl"] < base["gen_ppl"] else "worse"

    helps = any(verdict(r) == "better" for r in rows[1:])

    def shares(key: str, fmt: str) -> str:
        return (format(base[key], fmt) + " → "
                + " / ".join(format(r[key], fmt) for r in rows[1:]))

    return (("It helps" if helps else "Only noise, at this size")
            + ": at equal model calls, judged perplexity goes from "
            f"{base['gen_ppl']:.1f} ± {base['gen_ppl_se']:.1f} without remasking to "
            + ", ".join(f"{r['gen_ppl']:.1f} ± {r['gen_ppl_se']:.1f} at {r['remask']} "
                        f"({verdict(r)})" for r in rows[1:])
            + f"; stutters {shares('stutter', '.1%')}, broken ends "
            f"{shares('broken_end', '.1%')}, distinct-2 {shares('distinct_2', '.2f')}.")


def answer_mix(data: dict) -> str:
    rows, gains = data["rows"], data["gains"]
    mixed, alone = rows[0], rows[2]
    same_end = not beyond_noise(mixed, alone, "likelihood")
    instructions = [r for r in rows if r["prompts"] == "instructions"]
    control = ("neither beats its shuffled control by two standard errors"
               if not any(relevant(r) for r in instructions) else
               " and ".join(r["data"] for r in instructions if relevant(r))
               + " beats its shuffled control by two standard errors")
    return (("Not measurably at equal tokens" if same_end else "Yes, at equal tokens")
            + ": both validation bounds are still falling over the second half of training ("
            f"{gains['dialogue + instructions']:.2f} nats per reply token for the mix, "
            f"{gains['dialogue alone']:.2f} for dialogue alone), and on DailyDialog's "
            "validation chats they end "
            + ("within noise of each other" if same_end else "apart beyond the noise")
            + f" ({mixed['likelihood']:.2f} ± {mixed['likelihood_se']:.2f} mix, "
            f"{alone['likelihood']:.2f} ± {alone['likelihood_se']:.2f} alone). On "
            f"instruction prompts the mix's F1 is {rows[1]['f1']:.3f} against "
            f"{rows[3]['f1']:.3f}, but {control}.")


def answer_vs_ar(data: dict) -> str:
    rows = data["rows"]
    verdicts = []
    for d, a in zip(rows[::2], rows[1::2], strict=True):
        # relevance is F1 above its shuffled control: raw F1 also rewards common words
        figures_ = (("judged PPL", "gen_ppl", min), ("relevance", "relevance_gap", max))
        won = [h for h, k, better in figures_
               if better(d[k], a[k]) == d[k] and beyond_noise(d, a, k)]
        lost = [h for h, k, better in figures_
                if better(d[k], a[k]) == a[k] and beyond_noise(d, a, k)]
        verdicts.append(f"at {d['size']} diffusion is ahead on {', '.join(won) or 'nothing'}"
                        f" and behind on {', '.join(lost) or 'nothing'} beyond the noise "
                        f"(judged PPL {d['gen_ppl']:.1f} vs {a['gen_ppl']:.1f}, F1 − shuffled "
                        f"{d['relevance_gap']:.3f} vs {a['relevance_gap']:.3f}; "
                        f"{d['seconds_per_reply'] / a['seconds_per_reply']:.0f}× AR's time "
                        "per reply)")
    beats = any("ahead on judged PPL" in v or "ahead on relevance" in v for v in verdicts)
    bound_above = all(d["likelihood"] > a["likelihood"]
                      for d, a in zip(rows[::2], rows[1::2], strict=True))
    return (("Partly" if beats else "No") + ". At equal size, data and tokens: "
            + "; ".join(verdicts) + "."
            + (" Diffusion's likelihood is a bound, above AR's exact NLL at both sizes."
               if bound_above else ""))


def answer_relevance(data: dict) -> str:
    rows = data["rows"]
    above = [r for r in rows if relevant(r)]
    # a crossing counts once it holds to the end (one of 8 checkpoints crossing two
    # standard errors by chance is not rare)
    held = next((r for i, r in enumerate(rows) if all(relevant(x) for x in rows[i:])), None)
    first, last = rows[0], rows[-1]
    return (f"Yes, and they disagree: judged perplexity falls from {first['gen_ppl']:.0f} "
            f"to {last['gen_ppl']:.0f} over training while F1 "
            + (f"beats the shuffled-reference control for good from step {held['step']} "
               f"(gap {held['relevance_gap']:.3f} ± {held['relevance_gap_se']:.3f})."
               if held else
               "does not beat the shuffled-reference control for good: "
               + (f"only step{'s' if len(above) > 1 else ''} "
                  + ", ".join(str(r["step"]) for r in above)
                  + (" cross" if len(above) > 1 else " crosses") + " two standard "
                  f"errors, and the last checkpoint's gap is {last['relevance_gap']:.3f} ± "
                  f"{last['relevance_gap_se']:.3f}" if above else "no checkpoint does")
               + ". The replies grow fluent, not relevant."))


def answer_overfit(out: dict) -> str:
    d, a = out["diffusion"], out["ar"]
    first = "AR" if a["best_epoch"] < d["best_epoch"] else "diffusion"
    return (f"{first} overfits first: AR's validation loss is lowest at epoch "
            f"{a['best_epoch']:.0f} and rises {a['last'] - a['best']:.2f} nats by epoch "
            f"{a['epochs']:.0f}; diffusion's at epoch {d['best_epoch']:.0f}, rising "
            f"{d['last'] - d['best']:.2f}. At each best epoch: judged PPL "
            f"{d['gen_ppl']:.0f} (diffusion) vs {a['gen_ppl']:.0f} (AR), F1 − shuffled "
            f"{d['relevance_gap']:.3f} vs {a['relevance_gap']:.3f}.")



def training_note() -> str:
    """How long the study's own runs trained, now or in an earlier invocation."""
    now = sum(m for m, fresh in TRAINING.values() if fresh)
    before = sum(m for m, fresh in TRAINING.values() if not fresh)
    parts = []
    if now:
        parts.append(f"{now:.1f} min of the wall time trained them")
    if before:
        parts.append(f"{before:.1f} min of training by an earlier invocation were reused "
                     "(their metrics.jsonl; skipped here, so a run from scratch takes that "
                     "much longer)")
    return "; ".join(parts) or "nothing to train"


def figures(results: dict, path: tuple = ()) -> dict[tuple, float]:
    """Every number in a results.json, by its path (replies and timings left out)."""
    out = {}
    items = results.items() if isinstance(results, dict) else enumerate(results)
    for key, value in items:
        if key in TIMING or key == "replies":
            continue
        if isinstance(value, dict | list):
            out.update(figures(value, (*path, key)))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[(*path, key)] = float(value)
    return out


def compare(a: Path, b: Path) -> str:
    """Two runs' results side by side: how many figures agree exactly, and the largest
    difference of each question's figures relative to its size."""
    ra, rb = (json.loads(p.read_text()) for p in (a, b))
    fa, fb = figures(ra), figures(rb)
    walls = ", ".join(f"{p}: {r['minutes']['wall']:.1f} min" for p, r in ((a, ra), (b, rb))
                      if "wall" in r.get("minutes", {}))
    lines = [f"# Two runs of the study\n\n`python benchmarks/questions/study.py --compare "
             f"{a} {b}`\n\nWall time: {walls or 'not recorded'}.\n",
             "| question | figures | identical | largest relative difference |",
             "|---|---|---|---|"]
    for question in dict.fromkeys(k[0] for k in fa):
        keys = [k for k in fa if k[0] == question and k in fb]
        same = sum(fa[k] == fb[k] or (math.isnan(fa[k]) and math.isnan(fb[k])) for k in keys)
        worst = max((abs(fa[k] - fb[k]) / max(abs(fa[k]), 1e-12) for k in keys
                     if not math.isnan(fa[k])), default=0.0)
        lines.append(f"| {question} | {len(keys)} | {same} | {worst:.2e} |")
    missing = sorted(set(fa) ^ set(fb))
    lines.append(f"\nFigures in one run only: {len(missing)}. Timings are left out "
                 "(they are the only figures a rerun is not expected to reproduce).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every step at toy size")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the study's own runs go (default runs/questions)")
    parser.add_argument("--report", type=Path, default=None,
                        help="where README.md, results.json and the plots go (default: "
                        "beside this script; smoke/ under --smoke)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar="RESULTS",
                        help="compare two runs' results.json and stop")
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare), end="")
        return
    here = Path(__file__).parent
    study = Study(work=args.work or Path("runs/questions" + ("-smoke" if args.smoke else "")),
                  report=args.report or (here / "smoke" if args.smoke else here))
    if args.smoke:
        study.prompts, study.steps_factor, study.smoke = 8, 0.02, True
    study.report.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    inputs = prerequisites()
    judge = DiffusionLM.load(JUDGE, "cpu")
    lm, ar = DiffusionLM.load(shipped_checkpoint(), "cpu"), DiffusionLM.load(AR_TWIN, "cpu")
    histories, references = prompts_of(lm, study.prompts, [str(CHATMIX)])
    sections, results, minutes = [], {}, {}
    for name, fn in (("steps", lambda: q_steps(study, lm, ar, judge, histories, references)),
                     ("remask", lambda: q_remask(study, lm, judge, histories, references)),
                     ("mix", lambda: q_mix(study, judge)),
                     ("vs_ar", lambda: q_vs_ar(study, judge)),
                     ("relevance", lambda: q_relevance(study, judge)),
                     ("overfit", lambda: q_overfit(study, judge))):
        begun = time.perf_counter()
        text, data = fn()
        sections.append(text)
        results[name] = data
        minutes[name] = (time.perf_counter() - begun) / 60
        print(f"{name}: done in {minutes[name]:.1f} min", flush=True)
    wall = (time.perf_counter() - started) / 60
    command = "python benchmarks/questions/study.py" + (" --smoke" if args.smoke else "")
    head = (f"# The seed paper's questions\n\nCommand: `{command}` (configs: `configs/`); "
            f"wall time {wall:.1f} min on a 2-core CPU, no GPU ("
            + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()) + " min"
            + ("; reused inputs trained first: " + ", ".join(f"{k} {v:.1f} min" for k, v in
                                                             inputs.items()) if inputs else
               "; the reused inputs were there") + f"). Study runs in `{study.work}`: "
            + training_note() + ". "
            f"Judge: the separate AR model `{JUDGE}` (trained on the chat mix, seed 101; "
            "never one of the compared models).\n\n" + __doc__.split("Noise. ")[1])
    (study.report / "README.md").write_text(portable("\n".join([head, *sections])))
    for data in results.values():  # the reply texts are in README.md; keep the figures
        for row in [*data.get("rows", []), *data.values()] if isinstance(data, dict) else []:
            if isinstance(row, dict):
                row.pop("replies", None)
    results["minutes"] = {**minutes, "wall": wall, "training": {
        k: {"minutes": m, "trained_now": fresh} for k, (m, fresh) in TRAINING.items()}}
    (study.report / "results.json").write_text(
        portable(json.dumps(results, indent=1, default=str)) + "\n")


if __name__ == "__main__":
    main()
