import pytest
import torch

from dlm.config import model_preset
from dlm.model import Transformer
from tests.conftest import tiny_config


def test_logits_shape(tiny_model, tok):
    ids = torch.randint(0, tok.vocab_size, (3, 11))
    assert tiny_model(ids).shape == (3, 11, tok.vocab_size)


def test_bidirectional_sees_the_future_causal_does_not(tok):
    torch.manual_seed(0)
    ids = torch.randint(6, tok.vocab_size, (1, 10))
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % tok.vocab_size
    for causal, should_change in [(False, True), (True, False)]:
        model = Transformer(tiny_config(tok.vocab_size, causal=causal)).eval()
        first = model(ids)[0, 0]
        assert (not torch.allclose(first, model(changed)[0, 0])) == should_change


@pytest.mark.parametrize("causal", [False, True])
def test_left_padding_does_not_change_real_positions(tok, causal):
    torch.manual_seed(0)
    model = Transformer(tiny_config(tok.vocab_size, causal=causal)).eval()
    ids = torch.randint(6, tok.vocab_size, (1, 8))
    padded = torch.cat([torch.full((1, 3), tok.pad_id), ids], 1)
    key_padding = padded != tok.pad_id
    out = model(padded, key_padding)[:, 3:]
    assert torch.allclose(out, model(ids), atol=1e-5)
    assert not model(padded, key_padding).isnan().any()


def test_output_head_is_tied_to_the_embedding(tiny_model):
    names = [n for n, _ in tiny_model.named_parameters()]
    assert names.count("embed.weight") == 1 and not any("head" in n for n in names)


@pytest.mark.parametrize("preset,vocab,low,high", [
    ("tiny", 2048, 1e6, 3e6), ("small", 8192, 22e6, 32e6), ("base", 32768, 100e6, 120e6),
])
def test_preset_sizes(preset, vocab, low, high):
    with torch.device("meta"):
        n = Transformer(model_preset(preset, vocab_size=vocab)).num_parameters()
    assert low <= n <= high, n


def test_too_long_input_is_refused(tiny_model):
    with pytest.raises(ValueError, match="max_seq_len"):
        tiny_model(torch.zeros(1, 129, dtype=torch.long))
