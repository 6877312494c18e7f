"""Fast-dLLM caching: the cached sampler against the uncached one on real (random) models."""

import pytest
import torch

from dlm.config import ModelConfig, SampleConfig
from dlm.errors import ConfigError
from dlm.model import Transformer
from dlm.sampling import denoise, reply_canvas
from dlm.sampling.cache import CachedDenoiser

MASK, EOS, V = 1, 0, 40


def model(layers: int) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, d_model=32, n_layers=layers, n_heads=2, d_ff=64,
                      max_seq_len=64)
    return Transformer(cfg).eval()


def left_padded_prompts():
    prompt = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
    return prompt, prompt != 0


def run(denoiser, config, prompt=None, padding=None):
    if prompt is None:
        prompt, padding = left_padded_prompts()
    canvas = reply_canvas(prompt, padding, config.length, MASK, EOS)
    with torch.no_grad():
        return list(denoise(denoiser, canvas, config))


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
def test_one_layer_cache_is_exact(mode, cfg_scale):
    """With one layer a position's keys depend on its own token only, and tokens outside
    the block do not change while it is denoised: the reused keys are exact, so the
    cached sampler must give the uncached tokens, step for step."""
    m = model(1)
    plain = SampleConfig(length=12, steps=6, block_length=4, cfg_scale=cfg_scale)
    cached = SampleConfig(**{**vars(plain), "cache": mode})
    a, b = run(m, plain), run(m, cached)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.tokens, y.tokens)
        assert x.nfe == y.nfe


def test_deeper_model_cache_is_an_approximation_refreshed_per_block():
    """With two layers the reuse is approximate, but a block's first step is a full
    forward, so one step per block gives the uncached reply exactly."""
    m = model(2)
    plain = SampleConfig(length=12, steps=3, block_length=4)
    for mode in ("prefix", "dual"):
        cached = SampleConfig(**{**vars(plain), "cache": mode})
        assert torch.equal(run(m, plain)[-1].tokens, run(m, cached)[-1].tokens)


def test_dual_cache_computes_only_the_block_after_each_refresh():
    m = model(2)
    prompt, padding = left_padded_prompts()
    canvas = reply_canvas(prompt, padding, 12, MASK, EOS)
    computed = {}
    for mode in ("prefix", "dual"):
        den = CachedDenoiser(m, mode)
        with torch.no_grad():
            for lo, hi in [(4, 8), (4, 8), (8, 12), (8, 12)]:
                assert den(canvas.tokens, canvas.key_padding, lo, hi).shape == (2, 4, V)
        computed[mode] = den.positions_computed
    T = canvas.tokens.shape[1]
    assert computed["dual"] == 2 * T + 4 + 4  # two refreshes, then the block only
    assert computed["prefix"] == 2 * T + (T - 4) + (T - 8)  # the block and what follows


def test_cache_needs_the_transformer_itself():
    with pytest.raises(ConfigError, match="Transformer"):
        run(lambda ids, kp: torch.zeros(*ids.shape, V),
            SampleConfig(length=4, steps=2, cache="dual"))
    with pytest.raises(ConfigError, match="cache must be one of"):
        SampleConfig(cache="both")
