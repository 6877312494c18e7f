"""`dlm demo`: fine-tune the shipped chat model on the embedded corpus once (or, in an
install without one, train the tiny preset from scratch), cache it, show it off."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir

from dlm.checkpoint import resolve
from dlm.config import SampleConfig, TrainConfig
from dlm.errors import CheckpointError
from dlm.pipeline import DiffusionLM

DEMO_PROMPTS = ["hello", "how are you", "what is your name", "tell me a joke", "i am sad"]
DEMO_STEPS = 150
DEMO_LR = 5e-4
"""The fine-tuning from the shipped model (benchmarks/chat-budget/demo.md, 61 held-out
prompts of the corpus): 150 steps (157 s) made its replies the most related to the turn
(F1 - shuffled +0.047 +- 0.017, against +0.031 at 50 steps, +0.012 for the shipped model
as it is and +0.016 for the tiny preset from scratch, whose judged perplexity was 748
against 105) and fit the README's five-minute first command."""


def demo_config(out_dir: Path, max_steps: int | None = None) -> TrainConfig:
    """The demo run: tiny preset, chatterbot-corpus, sized to train in a few CPU minutes.

    Lowercased text, short canvases (16 prompt and 16 reply tokens, longer replies
    left out) and no repeated pairs: every CPU second goes to short chat replies.
    No prompt dropout for guidance: measured on this corpus, 10% of prompts dropped
    lowers the held-out NELBO (3.30 vs 3.88 at step 2,000) but costs the greedy
    replies the demo shows ("hello" -> "a" instead of "hi"). With ~850 training pairs
    the held-out NELBO is lowest after a few hundred steps and rises after (the model
    memorises the corpus): 1,000 steps with an evaluation every 100 keep the best
    checkpoint (`best/`), which is the one the demo shows. A 2,048-token vocabulary,
    the size the demo was measured with: on this corpus `dlm train`'s default
    would make ~4,000 tokens (lowercased), most of them seen a few times.
    """
    cfg = TrainConfig(out_dir=str(out_dir), preset="tiny", max_steps=1000, batch_size=64,
                      lr=3e-3, lowercase=True, prompt_len=16, response_len=16, drop_long=True,
                      eval_every=100, save_every=500, cfg_dropout=0.0, vocab_size=2048)
    if max_steps is not None:
        cfg.max_steps = max_steps
        cfg.eval_every = cfg.save_every = max(max_steps // 3, 1)
    return cfg


def fine_tune_config(out_dir: Path, base: Path, max_steps: int | None = None) -> TrainConfig:
    """The demo run from the shipped model: a short fine-tuning on the chatterbot corpus.

    The shipped model has already learnt to converse from three CPU hours of dialogue;
    the demo's minute teaches it the corpus's voice (its name, its jokes) without the
    language it could not learn from ~850 pairs. Its own padding, length head and canvas
    are kept (a reply is sized as the shipped model sizes it); prompts are cut to 32
    tokens (the corpus's are short) and no prompt dropout, as for the scratch demo.
    Measured in benchmarks/chat-budget/demo.md against the scratch demo."""
    import json

    shipped = json.loads((base / "config.json").read_text()).get("train", {})
    cfg = TrainConfig(out_dir=str(out_dir), init_from=str(base), max_steps=DEMO_STEPS,
                      batch_size=32, lr=DEMO_LR, prompt_len=32,
                      response_len=shipped.get("response_len", 48), eval_every=50,
                      save_every=DEMO_STEPS, cfg_dropout=0.0,
                      length_head=shipped.get("length_head", False),
                      objective=shipped.get("objective", "diffusion"),
                      block_size=shipped.get("block_size", 4))
    cfg.diffusion.padding = (shipped.get("diffusion") or {}).get("padding",
                                                                 cfg.diffusion.padding)
    if max_steps is not None:
        cfg.max_steps = max_steps
        cfg.eval_every = cfg.save_every = max(max_steps // 3, 1)
    return cfg


def demo_model(cache_dir: Path | None = None, max_steps: int | None = None,
               retrain: bool = False, from_shipped: bool = True) -> DiffusionLM:
    """The cached demo model, trained first if it is missing, unfinished or outdated:
    the shipped model fine-tuned on the embedded corpus (`from_shipped`, when this
    install has one), else the tiny preset from scratch."""
    from dlm.cli.console import RichReporter, console
    from dlm.shipped import SHIPPED_DIR
    from dlm.training.train import train

    base = SHIPPED_DIR if from_shipped and (SHIPPED_DIR / "config.json").is_file() else None
    root = Path(cache_dir or user_cache_dir("dlm"))
    if base is None:
        out_dir = root / "demo-tiny"
        cfg = demo_config(out_dir, max_steps)
    else:
        out_dir = root / f"demo-{base.name}"
        cfg = fine_tune_config(out_dir, base, max_steps)
    if not retrain:
        try:
            lm = DiffusionLM.load(resolve(out_dir), device="cpu")
            console.print(f"[dim]using the demo model in {out_dir} (--retrain to train anew)[/dim]")
            return lm
        except CheckpointError:
            pass
    what = (f"the shipped model fine-tuned for {cfg.max_steps} steps" if base else
            f"{cfg.preset} preset, {cfg.max_steps} steps")
    console.print(f"training the demo model ({what}) into {out_dir}")
    train(cfg, RichReporter())
    return DiffusionLM.load(out_dir, device="cpu")  # the kept (best) checkpoint


def kept_and_last(lm: DiffusionLM) -> str | None:
    """The kept checkpoint's validation NELBO beside the last one's, from the run's log."""
    import json

    best = lm.meta.get("best")  # what training recorded when it wrote best/
    if lm.source is None or not best or not (lm.source.parent / "metrics.jsonl").is_file():
        return None
    rows = [json.loads(line) for line in (lm.source.parent / "metrics.jsonl").open()]
    last = [r for r in rows if best["metric"] in r][-1]
    return (f"kept: step {best['step']}, validation NELBO {best['value']:.3f}; "
            f"last: step {last['step']}, {last[best['metric']]:.3f}")


def side_by_side(lm: DiffusionLM, prompts: list[str]) -> list[tuple[str, str, str | None]]:
    """(prompt, the demo model's reply, the shipped model's reply or None) for each
    prompt, each model with its own measured default decoding."""
    from dlm.shipped import SHIPPED_DIR

    # one prompt per call, as the traces are drawn: a sampled decoding's draws depend on
    # the batch a prompt shares, so a batch would show other replies than the traces
    ours = [lm.generate(p, lm.decoding())[0] for p in prompts]
    theirs: list[str | None] = [None] * len(prompts)
    if (SHIPPED_DIR / "config.json").is_file():
        shipped = DiffusionLM.load(SHIPPED_DIR, device="cpu")
        theirs = [shipped.generate(p, shipped.decoding())[0] for p in prompts]
    return list(zip(prompts, ours, theirs, strict=True))


def demo_traces(lm: DiffusionLM, prompts: list[str], config: SampleConfig) -> None:
    from dlm.cli.console import print_trace

    for prompt in prompts:
        states = []
        lm.generate(prompt, config, on_step=states.append)
        print_trace(prompt, states, lm.tokenizer)
