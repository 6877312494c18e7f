"""The judge can be real: any causal LM `transformers` loads (here a tiny random GPT-2,
a layout dlm does not read), an imported Llama folder, or a dlm AR checkpoint; judged
NLL and MAUVE on its features."""

from __future__ import annotations

import math

import pytest
import torch

from dlm.errors import ConfigError
from dlm.evaluation.judge import TransformersJudge, judge_features, judge_nlls, load_judge
from tests.hf_folders import VOCAB, tokenizer, write_folder

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

HISTORIES = [[{"role": "user", "content": f"hello {w}"}] for w in
             "how are you fine thanks what is your name tell me a".split()]
REPLIES = [f"i am {w} today" for w in "fine sad happy good yes no maybe later now the "
                                      "weather morning".split()]


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    tok = tokenizer()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder, model.eval()


def test_any_causal_lm_transformers_loads_is_a_judge(gpt2_folder):
    folder, model = gpt2_folder
    judge = load_judge(folder, "cpu")
    assert isinstance(judge, TransformersJudge)
    scored = judge_nlls(judge, HISTORIES[:2], REPLIES[:2])
    # the same sum by hand, with transformers' own model on the rendered chat
    tok = judge.tokenizer
    enc = tok.encode_chat([*HISTORIES[0], {"role": "assistant", "content": REPLIES[0]}])
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].log_softmax(-1)
    start = len(enc.prompt_ids)
    want = -logp[start - 1:, :].gather(-1, ids[0, start:, None]).sum()
    assert scored[0][1] == len(enc.response_ids)
    assert math.isclose(scored[0][0], float(want), rel_tol=1e-4)


def test_an_imported_llama_and_the_features_for_mauve(tmp_path):
    folder, _ = write_folder(tmp_path / "llama", "llama")
    judge = load_judge(folder, "cpu")
    features = judge_features(judge, HISTORIES, REPLIES)
    assert features.shape == (len(REPLIES), 64) and torch.isfinite(features).all()


def test_mauve_on_the_judges_features(gpt2_folder):
    pytest.importorskip("mauve", reason="mauve-text is not installed")
    from dlm.evaluation.judge import mauve_score

    judge = load_judge(gpt2_folder[0], "cpu")
    same = mauve_score(judge, HISTORIES, REPLIES, REPLIES)
    other = mauve_score(judge, HISTORIES, ["a"] * len(REPLIES), REPLIES)
    assert 0 < other < same <= 1


def test_a_diffusion_model_is_no_judge(tmp_path):
    folder, _ = write_folder(tmp_path / "llada", "llada")
    with pytest.raises(ConfigError, match="must be an AR model"):
        load_judge(folder, "cpu")
