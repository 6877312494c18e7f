"""The dual objective (AR + block diffusion in one model, TiDAR-style): its mask, its two
losses, and self-speculative decoding that writes exactly its own AR greedy reply."""

import json

import pytest
import torch

from dlm import DiffusionLM, SampleConfig
from dlm.config import ModelConfig
from dlm.diffusion import get_schedule
from dlm.diffusion.block import block_diffusion_loss
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.objectives.dual import dual_losses, dual_mask
from dlm.objectives.next_token import ar_loss
from dlm.sampling.ar import ar_decode
from dlm.sampling.dual import CausalView, dual_decode
from dlm.sampling.sampler import final_tokens
from dlm.training.train import train

from .conftest import tiny_train_config

MASK, EOS, V = 1, 3, 50


def model(layers=2, seed=0, scale=1.0):
    torch.manual_seed(seed)
    m = Transformer(ModelConfig(vocab_size=V, d_model=32, n_layers=layers, n_heads=2,
                                d_ff=64, max_seq_len=96)).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def test_dual_mask_by_hand():
    """L = 4, blocks of 2: rows are queries x_t0 x_t1 x_t2 x_t3 x_00 x_01 x_02 x_03."""
    expected = torch.tensor([
        # x_t: own block      x_0: clean tokens before the block
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        # x_0: causal, token by token
        [0, 0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(dual_mask(4, 2), expected)


def test_the_ar_half_is_the_causal_model_and_the_diffusion_half_is_bd3lm():
    """The AR sum equals an AR forward of the same model under the causal mask. With one
    layer the clean keys do not depend on the clean half's mask, so the diffusion half is
    BD3-LM's loss under the same draws."""
    ids = torch.randint(6, V, (4, 16))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    schedule = get_schedule("linear")
    m = model(layers=2)
    ar_sum, ar_n, *_ = dual_losses(m, ids, maskable, None, schedule, MASK, 4, 1e-3, True,
                                   torch.Generator().manual_seed(0))
    reference = ar_loss(CausalView(m), ids, maskable, None)
    torch.testing.assert_close(ar_sum / ar_n, reference.loss, rtol=1e-9, atol=1e-9)
    assert ar_n == reference.n_tokens == 4 * 15
    one = model(layers=1)
    _, _, diff_sum, n, masked = dual_losses(one, ids, maskable, None, schedule, MASK, 4,
                                            1e-3, True, torch.Generator().manual_seed(3))
    bd3 = block_diffusion_loss(one, ids, maskable, None, schedule, MASK, 4,
                               generator=torch.Generator().manual_seed(3))
    assert masked == bd3.n_masked and n == bd3.n_tokens
    torch.testing.assert_close(diff_sum / n, bd3.loss, rtol=1e-9, atol=1e-9)


def ar_reply(m, prompt, padding, config):
    return final_tokens(ar_decode(CausalView(m), prompt, padding, config, MASK, EOS))


@pytest.mark.parametrize("block", [2, 4, 6])
def test_self_speculative_greedy_is_the_models_ar_greedy(block):
    m = model(scale=6.0)  # sharp: every token depends on its context
    prompt = torch.randint(6, V, (3, 7), generator=torch.Generator().manual_seed(block))
    padding = torch.ones_like(prompt, dtype=torch.bool)
    padding[0, :3] = False  # a shorter, left-padded prompt
    config = SampleConfig(length=24, eos="ban")
    steps = list(dual_decode(m, prompt, padding, config, block, MASK, EOS))
    assert torch.equal(steps[-1].tokens, ar_reply(m, prompt, padding, config))
    verifies = [s for s in steps if s.rejected is not None]
    assert len(verifies) <= 24  # never more forwards than AR decoding


def test_sampled_self_speculative_replies_are_drawn():
    """Sampling: the first token too is drawn from the AR half (not its argmax), and a
    seed gives the same reply again."""
    m = model(scale=1.0)
    prompt = torch.randint(6, V, (1, 5), generator=torch.Generator().manual_seed(0))
    config = SampleConfig(length=6, eos="ban", temperature=1.0)

    def reply(seed):
        steps = dual_decode(m, prompt, None, config, 4, MASK, EOS,
                            generator=torch.Generator().manual_seed(seed))
        return final_tokens(steps)[0]

    replies = [reply(seed) for seed in range(8)]
    assert torch.equal(replies[0], reply(0))
    assert len({int(r[0]) for r in replies}) > 1  # the first token varies with the seed


def test_kept_drafts_cut_the_forwards():
    """A model whose every prediction is the same token (its diffusion half agrees with
    its AR half): every draft is kept, so a forward writes block_size tokens."""
    m = model(layers=1)
    with torch.no_grad():  # the residual stream is the input's embedding, which has a
        for block in m.blocks:  # common direction, longest in token 7's row
            block.attn.proj.weight.zero_()
            block.mlp.down.weight.zero_()
        m.embed.weight.mul_(0.01)
        m.embed.weight[:, 0] += 1.0
        m.embed.weight[7, 0] += 1.0
    prompt = torch.full((1, 4), 7)
    config = SampleConfig(length=16, eos="ban")
    steps = list(dual_decode(m, prompt, None, config, 4, MASK, EOS))
    assert torch.equal(steps[-1].tokens, ar_reply(m, prompt, None, config))
    forwards = steps[-1].nfe
    assert forwards <= 16 / 4 + 2, forwards  # the first forward has no draft to verify


class Positional(torch.nn.Module):
    """A mock dual model whose reply is a function of position: a clean token at position
    p predicts token(p + 1), a mask at p predicts token(p) (it stands for that token).
    Its AR half and its diffusion half agree, so every draft taken from the right mask
    outputs is kept; a draft read one mask off is refused."""

    def __init__(self, wrong_every: int = 0):
        super().__init__()
        self.config = ModelConfig(vocab_size=V, d_model=2, n_layers=1, n_heads=1, d_ff=2,
                                  max_seq_len=96)
        self.wrong_every = wrong_every  # masks at multiples of it guess the wrong token

    @staticmethod
    def token(p):
        return 10 + p % 30

    def new_cache(self, batch, max_len):
        from dlm.model import KVCache

        return KVCache(self.config, batch, max_len, "cpu", torch.float64)

    def forward(self, ids, key_padding=None, select=None, cache=None, start=None,
                positions=None, attn_mask=None):
        B, T = ids.shape
        begin = (cache.length if start is None else start) if cache is not None else 0
        if positions is None:
            positions = torch.arange(begin, begin + T)
        positions = positions.expand(B, T)
        if cache is not None:
            cache.length = max(cache.length, begin + T)
        target = torch.where(ids == MASK, self.token(positions), self.token(positions + 1))
        if self.wrong_every:
            wrong = (ids == MASK) & (positions % self.wrong_every == 0)
            target = torch.where(wrong, self.token(positions + 1), target)
        return torch.zeros(B, T, V, dtype=torch.float64).scatter_(-1, target[..., None], 9.0)


@pytest.mark.parametrize("block", [3, 4])
def test_the_next_draft_is_read_from_the_masks_after_the_verified_token(block):
    m = Positional()
    prompt = torch.full((2, 5), 7)
    config = SampleConfig(length=24, eos="ban")
    steps = list(dual_decode(m, prompt, None, config, block, MASK, EOS))
    assert torch.equal(steps[-1].tokens, ar_reply(m, prompt, None, config))
    assert steps[-1].tokens[0, :3].tolist() == [Positional.token(p) for p in (5, 6, 7)]
    # after the first forward (nothing to verify), each writes block_size tokens
    assert steps[-1].nfe <= 1 + 24 / block + 1, steps[-1].nfe


def test_a_refusal_does_not_cost_a_forward_without_drafts():
    """Drafts at every third position are refused. Each forward drafts for every number
    of drafts the verifier may keep, so the one after a refusal verifies a draft too:
    with 3 drafts a forward, 3 tokens a forward from the third on (keep 2, correct 1).
    Drafting only for "all kept" spent a forward writing one token after every refusal
    (18 calls here)."""
    m = Positional(wrong_every=3)
    prompt = torch.full((2, 5), 7)
    config = SampleConfig(length=24, eos="ban")
    steps = list(dual_decode(m, prompt, None, config, 4, MASK, EOS))
    assert torch.equal(steps[-1].tokens, ar_reply(m, prompt, None, config))
    rejected = sum(int(s.rejected.any()) for s in steps if s.rejected is not None)
    assert rejected >= 5  # the mock does refuse
    # the prompt's prefill, a first forward with nothing to verify, one more to settle
    # into the pattern, then 3 tokens a forward: 11 calls
    assert steps[-1].nfe <= 12, steps[-1].nfe


def test_a_dual_run_trains_evaluates_both_and_decodes(tmp_path, pairs_tsv):
    cfg = tiny_train_config(tmp_path / "dual", pairs_tsv, objective="dual", max_steps=30,
                            eval_every=30, block_size=4)
    result = train(cfg)
    lines = (tmp_path / "dual" / "metrics.jsonl").read_text().splitlines()
    assert '"val_nll"' in lines[-1] and '"val_nelbo"' in lines[-1]
    lm = DiffusionLM.load(result.checkpoint)
    greedy = SampleConfig(length=12)
    ar = final_tokens(ar_decode(CausalView(lm.model), *lm._prompt_batch([[
        {"role": "user", "content": "hello"}]]), greedy, lm.tokenizer.mask_id,
        lm.tokenizer.eos_id))
    assert lm.reply_ids([[{"role": "user", "content": "hello"}]], greedy).tolist() == \
        ar.tolist()
    with pytest.raises(ConfigError, match="cannot draft"):
        lm.with_verifier(lm)
    # its measured decoding (dlm.defaults.BY_OBJECTIVE): sampled at a fixed seed, so the
    # same prompt gets the same reply through every door; a given value still wins
    from dlm.defaults import BY_OBJECTIVE

    assert BY_OBJECTIVE["dual"]["temperature"] > 0
    config = lm.decoding()
    assert (config.temperature, config.seed) == (BY_OBJECTIVE["dual"]["temperature"],
                                                 BY_OBJECTIVE["dual"]["seed"])
    assert lm.generate(["hello", "hi"]) == lm.generate(["hello", "hi"])
    assert lm.decoding(temperature=0.0).temperature == 0.0
    with pytest.raises(ConfigError, match="block_size"):
        train(tiny_train_config(tmp_path / "bad", pairs_tsv, objective="dual", block_size=1))


def test_a_dual_run_starts_from_an_ar_checkpoint_at_its_likelihood(tmp_path, pairs_tsv):
    """TiDAR starts from an AR model: its weights read causally are the AR half, so the
    dual run's first validation is the AR model's own held-out NLL, exactly."""
    ar = train(tiny_train_config(tmp_path / "ar", pairs_tsv, objective="ar", max_steps=20,
                                 eval_every=20))
    ar_nll = [json.loads(line) for line in
              (tmp_path / "ar" / "metrics.jsonl").open()][-1]["val_nll"]
    cfg = tiny_train_config(tmp_path / "dual", pairs_tsv, objective="dual", max_steps=2,
                            eval_every=2, block_size=4, init_from=str(ar.checkpoint))
    result = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "dual" / "metrics.jsonl").open()]
    first = next(r for r in rows if "val_nll" in r)
    assert first["step"] == 0
    assert first["val_nll"] == pytest.approx(ar_nll, rel=1e-5)
    lm = DiffusionLM.load(result.checkpoint)
    assert lm.objective.name == "dual" and not lm.model.config.causal
