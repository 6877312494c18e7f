"""Block diffusion (BD3-LM): the attention mask, the loss, and the cached sampler."""

import pytest
import torch

from dlm.config import ModelConfig, SampleConfig
from dlm.diffusion import diffusion_loss, get_schedule
from dlm.diffusion.block import (
    block_causal_mask,
    block_diffusion_loss,
    flex_training_mask,
    training_mask,
)
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.sampling.block import block_decode

MASK, V = 1, 50


def model(layers=2, seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=V, d_model=32, n_layers=layers, n_heads=2,
                                   d_ff=64, max_seq_len=64)).eval()


def test_training_mask_by_hand():
    """L = 4, blocks of 2: rows are queries x_t0 x_t1 x_t2 x_t3 x_00 x_01 x_02 x_03."""
    expected = torch.tensor([
        # x_t: own block      x_0: earlier blocks
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        # x_0: block-causal
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(training_mask(4, 2), expected)
    assert torch.equal(block_causal_mask(4, 2), expected[4:, 4:])


def test_one_block_is_exactly_mdlm():
    """With block_size = L the draws of t and of the masks are MDLM's, and x_t sees only
    itself, so the loss is MDLM's to float precision."""
    m, schedule = model(), get_schedule("linear")
    ids = torch.randint(6, V, (4, 16))
    maskable = torch.ones_like(ids, dtype=torch.bool)  # packed text: nothing to align
    a = diffusion_loss(m, ids, maskable, None, schedule, MASK,
                       generator=torch.Generator().manual_seed(3))
    b = block_diffusion_loss(m, ids, maskable, None, schedule, MASK, 16,
                             generator=torch.Generator().manual_seed(3))
    assert a.n_masked == b.n_masked and a.n_tokens == b.n_tokens
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-6)


def test_clean_half_computes_the_keys_a_sampler_caches():
    """x_0's logits in the joint forward equal a block-causal forward of x_0 alone: the
    noisy half never leaks into the clean half."""
    m = model()
    ids = torch.randint(6, V, (2, 8))
    joint = m(torch.cat([torch.full_like(ids, MASK), ids], 1),
              positions=torch.arange(8).repeat(2), attn_mask=training_mask(8, 4))
    alone = m(ids, attn_mask=block_causal_mask(8, 4))
    torch.testing.assert_close(joint[:, 8:], alone, rtol=1e-5, atol=1e-5)


# eager flex attention (no torch.compile) is the slow reference path: enough for equality
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@torch.no_grad()  # flex attention has no CPU backward: on CPU training uses SDPA's mask
def test_flex_attention_matches_the_sdpa_mask():
    m = model()
    ids = torch.randint(6, V, (2, 8))
    padding = torch.ones(2, 8, dtype=torch.bool)
    padding[1, :3] = False
    both = torch.cat([ids, ids], 1)
    pad2 = torch.cat([padding, padding], 1)
    positions = torch.arange(8).repeat(2)
    dense = m(both, pad2, positions=positions, attn_mask=training_mask(8, 4))
    try:
        flex = m(both, positions=positions, attn_mask=flex_training_mask(8, 4, pad2, "cpu"))
    except Exception as exc:  # noqa: BLE001 - flex on this device/torch may be unavailable
        pytest.skip(f"flex attention does not run here: {exc}")
    real = pad2[:, :, None].expand_as(dense)  # padded queries' outputs are never used
    torch.testing.assert_close(flex[real], dense[real], rtol=1e-4, atol=1e-4)


def test_a_batch_is_aligned_so_the_reply_starts_on_a_block():
    from dlm.diffusion.block import align_to_blocks

    ids = torch.arange(10, 16)[None].repeat(2, 1)  # a 3-token prompt, a 3-token reply
    maskable = torch.zeros_like(ids, dtype=torch.bool)
    maskable[:, 3:] = True
    a_ids, a_mask, a_real = align_to_blocks(ids, maskable, None, 4)
    assert a_ids.shape == (2, 8)  # 1 pad left, 1 right: the reply starts block 1
    assert torch.equal(a_mask[0].nonzero().flatten(), torch.arange(4, 7))
    assert a_real[0].tolist() == [False] + [True] * 6 + [False]
    loss = block_diffusion_loss(model(), ids, maskable, None, get_schedule("linear"), MASK, 4)
    assert loss.n_tokens == 6 and torch.isfinite(loss.loss)


def reference_block_decode(m, prompt, config, block_size, eos):
    """No cache: every step recomputes the clean prefix and the block, block-causally."""
    from dlm.sampling import Canvas, denoise
    from dlm.sampling.block import aligned_prompt

    ids, _ = aligned_prompt(prompt, None, block_size, 0)
    per_block = max(1, config.steps // (config.length // block_size))
    block_config = SampleConfig(**{**vars(config), "length": block_size, "steps": per_block})
    done = ids
    for _ in range(config.length // block_size):
        a = done.shape[1]

        def den(block, _padding, done=done, a=a):
            full = torch.cat([done, block], 1)
            return m(full, attn_mask=block_causal_mask(a + block_size, block_size))[:, a:]
        canvas = Canvas(torch.full((ids.shape[0], block_size), MASK), MASK, eos)
        block = list(denoise(den, canvas, block_config))[-1].tokens
        done = torch.cat([done, block], 1)
        if bool((done[:, ids.shape[1]:] == eos).any(1).all()):
            break
    return done[:, ids.shape[1]:]


@pytest.mark.parametrize("rule", ["low_confidence", "threshold"])
def test_cached_block_sampler_equals_recomputing_everything(rule):
    m = model(layers=2, seed=1)
    prompt = torch.randint(6, V, (2, 6))
    config = SampleConfig(length=12, steps=6, rule=rule, threshold=0.2, eos="ban")
    steps = list(block_decode(m, prompt, None, config, 4, MASK, eos_id=0))
    expected = reference_block_decode(m, prompt, config, 4, eos=0)
    assert torch.equal(steps[-1].tokens, expected)
    # prompt read once, each block's steps, and one clean pass per finished block but the last
    if rule == "low_confidence":  # 6 steps over 3 blocks, exactly
        assert steps[-1].nfe == 1 + 6 + 2
    else:
        assert steps[-1].nfe <= 1 + 6 + 2
    assert not bool((steps[-1].tokens == MASK).any())


def test_block_sampler_stops_at_eos():
    """A model that puts eos first in every block: the reply ends after one block."""
    m = model()
    with torch.no_grad():
        m.embed.weight[5] += 10 * m.embed.weight.mean(0)  # id 5 dominates the tied head
    steps = list(block_decode(m, torch.randint(6, V, (1, 4)), None,
                              SampleConfig(length=16, steps=16), 4, MASK, eos_id=5))
    tokens = steps[-1].tokens
    assert tokens.shape == (1, 16) and bool((tokens[0, 4:] == 5).all())
    assert steps[-1].nfe < 1 + 16  # the later blocks were never denoised


def test_block_model_trains_evaluates_and_replies(tmp_path, pairs_tsv):
    from dlm.evaluation.likelihood import likelihood
    from dlm.pipeline import DiffusionLM
    from dlm.training.train import train

    from .conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path / "run", pairs_tsv, objective="block", block_size=4,
                            max_steps=8, lr=3e-3)
    result = train(cfg)
    assert result.history[-1]["val_nelbo"] < result.history[0]["val_nelbo"]
    lm = DiffusionLM.load(result.checkpoint, "cpu")
    assert lm.objective.name == "block" and lm.block_size == 4
    reply = lm.generate("hello", SampleConfig(length=8, steps=8))
    assert isinstance(reply[0], str)
    from dlm.evaluation.report import held_out

    val, _, _, _ = held_out(lm, None, 16)
    assert likelihood(lm, val, draws=2).is_bound
    with pytest.raises(ConfigError, match="block diffusion"):
        lm.infill("a [MASK] b")


def test_a_block_run_starts_from_an_ar_checkpoint_with_its_weights(tmp_path, pairs_tsv):
    """BD3-LM from AR: the AR model's weights are the start; attention becomes
    block-causal (masks per call) and nothing else changes shape."""
    from safetensors.torch import load_file

    from dlm import DiffusionLM, train

    from .conftest import tiny_train_config

    ar = train(tiny_train_config(tmp_path / "ar", pairs_tsv, objective="ar", max_steps=2))
    run = train(tiny_train_config(tmp_path / "block", pairs_tsv, objective="block",
                                  block_size=4, max_steps=1, lr=0.0,
                                  init_from=str(ar.checkpoint)))
    lm = DiffusionLM.load(run.checkpoint)
    assert lm.objective.name == "block" and not lm.model.config.causal
    assert not lm.model.config.shift  # each position predicts its own token
    before = load_file(str(ar.checkpoint / "model.safetensors"))
    after = load_file(str(run.checkpoint / "model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # lr 0: the AR weights
    assert isinstance(lm.reply([{"role": "user", "content": "hi"}],
                               SampleConfig(length=8, steps=8)), str)


def test_a_block_size_longer_than_the_sequence_is_refused(tmp_path, pairs_tsv):
    from dlm.training.train import train

    from .conftest import tiny_train_config

    with pytest.raises(ConfigError, match="block_size must be between"):
        train(tiny_train_config(tmp_path / "run", pairs_tsv, objective="block",
                                block_size=500))


def test_a_block_size_that_does_not_tile_the_canvas_is_refused(tmp_path, pairs_tsv):
    """Alignment padding past the model's positions would fail mid-run (measured: a packed
    length of 64 with blocks of 5 asked for 65 positions), so it is refused up front."""
    from dlm.training.train import train

    from .conftest import tiny_train_config

    with pytest.raises(ConfigError, match="block_size 5 must divide prompt_len = 16"):
        train(tiny_train_config(tmp_path / "run", pairs_tsv, objective="block",
                                block_size=5))
    text = tmp_path / "text.txt"
    text.write_text("\n\n".join(f"story {i}: " + "the cat sat on the mat. " * 8
                                 for i in range(40)))
    with pytest.raises(ConfigError, match="block_size 5 must divide seq_len = 64"):
        train(tiny_train_config(tmp_path / "text", text, objective="block", block_size=5,
                                seq_len=64))


def test_cli_trains_generates_and_evaluates_a_block_model(tmp_path, pairs_tsv):
    """`dlm train --objective block --block-size`, then `dlm generate` and `dlm eval`, the
    latter reporting the BD3 NELBO as a bound."""
    import json

    from typer.testing import CliRunner

    from dlm.cli.app import app

    runner, run = CliRunner(), tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--data", str(pairs_tsv), "--out-dir", str(run), "--objective", "block",
        "--block-size", "4", "--max-steps", "3", "--batch-size", "8", "--vocab-size", "300",
        "--prompt-len", "16", "--response-len", "16", "--eval-every", "0",
        "--save-every", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    meta = json.loads((run / "last" / "config.json").read_text())
    assert meta["objective"] == "block" and meta["train"]["block_size"] == 4
    result = runner.invoke(app, ["generate", "--ckpt", str(run), "--prompt", "hello",
                                 "--length", "8", "--steps", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", "--ckpt", str(run), "--prompts", "2", "--draws", "2",
                                 "--steps", "2", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "ev" / "eval.md").read_text()
    assert "NELBO (bound)" in markdown and "block model (blocks of 4)" in markdown
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["objective"] == "block" and report["block_size"] == 4
    assert report["likelihood"]["is_bound"]
    assert report["likelihood"]["nats_per_token"] > 0
