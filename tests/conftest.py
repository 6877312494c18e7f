"""Shared fixtures: a throwaway tokenizer, tiny models, data files written by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlm.config import ModelConfig, TrainConfig
from dlm.model import Transformer
from dlm.tokenizer import DLMTokenizer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

PAIRS = [
    ("hello", "hi there"),
    ("hi", "hello"),
    ("how are you", "i am fine, thank you"),
    ("how are you doing", "very well, thanks"),
    ("what is your name", "i am a diffusion model"),
    ("good morning", "good morning to you"),
    ("tell me a joke", "why did the chicken cross the road"),
    ("bye", "goodbye, see you soon"),
    ("thank you", "you are welcome"),
    ("what time is it", "i do not know the time"),
]


@pytest.fixture(scope="session")
def tok() -> DLMTokenizer:
    texts = [t for pair in PAIRS for t in pair] * 5
    return DLMTokenizer.train(texts, vocab_size=300)


def tiny_config(vocab_size: int, causal: bool = False) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, d_model=32, n_layers=1, n_heads=2, d_ff=64,
                       max_seq_len=128, causal=causal)


@pytest.fixture
def tiny_model(tok) -> Transformer:
    import torch

    torch.manual_seed(0)
    return Transformer(tiny_config(tok.vocab_size)).eval()


@pytest.fixture
def pairs_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.tsv"
    lines = ["# prompt<TAB>response, as the seed prototype's data/pairs.tsv"]
    lines += [f"{p}\t{r}" for p, r in PAIRS * 4]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_train_config(out_dir: Path, data: Path, **overrides) -> TrainConfig:
    """A run that takes well under a second per step on a CPU."""
    cfg = TrainConfig(
        out_dir=str(out_dir), data=[str(data)], preset="tiny", vocab_size=300, prompt_len=16,
        response_len=16, max_steps=6, batch_size=8, lr=1e-2, warmup_steps=2, eval_every=0,
        save_every=0, val_fraction=0.1, device="cpu", bf16="off", val_prompts=["hello"],
        model_overrides=dict(d_model=32, n_layers=1, n_heads=2, d_ff=64),
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def pytest_addoption(parser):
    parser.addoption("--fuzz-examples", type=int, default=20,
                     help="Hypothesis examples per route and generation mode in the HTTP "
                          "fuzz suite (CI: 20; raise it for a longer run).")
    parser.addoption("--fuzz-report", default=None,
                     help="Write the fuzz suite's counts (requests per route and status, "
                          "the slowest response) to this JSON file.")
    parser.addoption("--fault-moments", type=int, default=7,
                     help="Failpoint passages (of 76: every step and every moment of every "
                          "save) at which a training run is killed in the fault-injection "
                          "tests, spread evenly; CI: 7, the long mode: 40 or more.")
    parser.addoption("--fault-trials", type=int, default=3,
                     help="Training runs killed with SIGKILL at random moments (besides one "
                          "at each failpoint) in the fault-injection tests.")


@pytest.fixture(scope="module")
def models(tok):
    """Speculative decoding's pair (tests/test_speculative.py, test_draft_cache.py): a
    random causal verifier and a random full-attention drafter, in float64 so that
    one forward over k positions and k forwards of one agree to the last argmax."""
    import torch

    torch.manual_seed(0)
    verifier = Transformer(tiny_config(tok.vocab_size, causal=True)).double().eval()
    drafter = Transformer(tiny_config(tok.vocab_size)).double().eval()
    with torch.no_grad():  # sharper than at init, so each token depends on its context
        for p in verifier.parameters():
            p.mul_(6.0)
    return verifier, drafter


def pytest_generate_tests(metafunc):
    if "moment" in metafunc.fixturenames:
        from tests.test_faults import pytest_generate_tests_for_moments

        pytest_generate_tests_for_moments(metafunc)
