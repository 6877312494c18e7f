"""Checks that need a CUDA device (`pytest -m gpu`, run by benchmarks/gpu/run.sh); each is
skipped, saying so, where there is none."""

from __future__ import annotations

import pytest
import torch

from dlm import DiffusionLM
from tests.hf_folders import VOCAB, write_folder

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
HELLO = [{"role": "user", "content": "hello how are you"}]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers is not installed")
    root = tmp_path_factory.mktemp("hf")
    return {kind: write_folder(root / kind, kind)[0] for kind in ("llada", "llama")}


def test_an_imported_model_on_the_gpu_computes_what_it_does_on_the_cpu(folders):
    cpu = DiffusionLM.load(folders["llada"], "cpu")
    gpu = DiffusionLM.load(folders["llada"], "cuda", dtype="bfloat16")
    assert {p.device.type for p in gpu.model.parameters()} == {"cuda"}
    ids = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = cpu.model(ids)
        got = gpu.model(ids.cuda()).float().cpu()
    assert (got - want).abs().max() < 0.05  # bfloat16 weights against float32


def test_speculative_decoding_on_the_gpu_writes_the_verifiers_greedy_reply(folders):
    drafter = DiffusionLM.load(folders["llada"], "cuda").with_verifier(folders["llama"])
    greedy = dict(temperature=0.0, repetition_penalty=1.0, length=16)
    want = drafter.verifier.reply_ids([HELLO], drafter.verifier.decoding(**greedy))[0]
    got = drafter.reply_ids([HELLO], drafter.decoding(decode="speculative", **greedy))[0]
    ends = drafter.tokenizer.end_ids
    end = next((i for i, t in enumerate(want.tolist()) if t in ends), len(want))
    assert got[:end + 1].tolist() == want[:end + 1].tolist()


def test_training_on_the_gpu_in_bf16_lowers_the_loss(tmp_path, pairs_tsv):
    from dlm import TrainConfig, train

    result = train(TrainConfig(data=[str(pairs_tsv)], out_dir=str(tmp_path / "run"),
                               max_steps=30, batch_size=16, eval_every=30, save_every=30,
                               val_examples=8, tensorboard=False, device="cuda", bf16="on"))
    first, last = result.history[0], result.history[-1]
    assert last["step"] == 30 and last["val_nelbo"] < first["val_nelbo"]
