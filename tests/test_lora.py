"""LoRA through peft (issue 36, item 2): only the adapters train, checkpoints hold the
adapters with the base's path and hash, `--resume` continues, `dlm export --merge` folds
them into the weights; on dlm's own models and on an imported Llama folder (A2D)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dlm import DiffusionLM, TrainConfig, train
from dlm.config import DiffusionConfig
from dlm.errors import CheckpointError, ConfigError
from dlm.layouts.export import export
from dlm.lora import is_lora

pytest.importorskip("peft", reason="peft is not installed")


def ar_base(tmp_path, pairs_tsv):
    run = train(TrainConfig(data=[str(pairs_tsv)], out_dir=str(tmp_path / "ar"),
                            objective="ar", max_steps=2, batch_size=8, eval_every=2,
                            save_every=2, val_examples=4, tensorboard=False, device="cpu"))
    return run.out_dir


def lora_run(tmp_path, pairs_tsv, base, steps=4, **extra):
    return TrainConfig(data=[str(pairs_tsv)], out_dir=str(tmp_path / "lora"),
                       init_from=str(base), lora_rank=4, lora_alpha=8.0, max_steps=steps,
                       anneal_steps=2, batch_size=8, eval_every=steps, save_every=2,
                       val_examples=4, tensorboard=False, device="cpu",
                       diffusion=DiffusionConfig(padding="eos"), **extra)


def test_only_the_adapters_train_and_the_checkpoint_holds_only_them(tmp_path, pairs_tsv):
    base = ar_base(tmp_path, pairs_tsv)
    before = DiffusionLM.load(base, "cpu").model.state_dict()
    out = train(lora_run(tmp_path, pairs_tsv, base)).out_dir
    stored = load_file(str(out / "last" / "model.safetensors"))
    assert stored and all("lora_" in k for k in stored)
    meta = json.loads((out / "last" / "config.json").read_text())
    assert meta["lora"]["rank"] == 4 and meta["lora"]["base"].endswith("best")
    assert len(meta["lora"]["base_sha256"]) == 64
    lm = DiffusionLM.load(out, "cpu")
    assert is_lora(lm.model) and lm.model.config.shift
    adapted = {k.replace(".base_layer", ""): v for k, v in lm.model.state_dict().items()
               if "lora_" not in k}
    for name, tensor in before.items():  # the base is frozen: every weight as it was
        assert torch.equal(adapted[name], tensor), name
    moved = [k for k, v in stored.items() if "lora_B" in k and v.abs().sum() > 0]
    assert moved  # B starts at zero: the adapters did train


def test_resume_and_export_merge_give_the_adapted_models_logits(tmp_path, pairs_tsv):
    base = ar_base(tmp_path, pairs_tsv)
    out = train(lora_run(tmp_path, pairs_tsv, base, steps=4)).out_dir
    cfg = json.loads((out / "last" / "config.json").read_text())
    cfg["train"]["max_steps"] = 6
    (out / "last" / "config.json").write_text(json.dumps(cfg))
    train(TrainConfig(), resume=out / "last")
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 6
    lm = DiffusionLM.load(out, "cpu", best=False)
    ids = torch.randint(6, lm.tokenizer.vocab_size, (2, 16))
    with torch.no_grad():
        want = lm.model(ids)
    with pytest.raises(ConfigError, match="--merge"):
        export(lm, tmp_path / "plain")
    folder, _ = export(lm, tmp_path / "dream", merge=True)
    back = DiffusionLM.load(folder, "cpu")
    assert back.meta["imported"]["model_type"] == "Dream"
    with torch.no_grad():
        assert (back.model(ids) - want).abs().max() < 1e-4


def test_a_changed_base_is_refused_by_its_hash(tmp_path, pairs_tsv):
    base = ar_base(tmp_path, pairs_tsv)
    out = train(lora_run(tmp_path, pairs_tsv, base)).out_dir
    best = base / "best"
    weights = load_file(str(best / "model.safetensors"))
    weights["norm.weight"] = weights["norm.weight"] + 1
    from safetensors.torch import save_file

    save_file(weights, str(best / "model.safetensors"))
    with pytest.raises(CheckpointError, match="has changed"):
        DiffusionLM.load(out, "cpu")


def test_lora_adapts_an_imported_llama_folder(tmp_path, pairs_tsv):
    pytest.importorskip("transformers", reason="transformers is not installed")
    from tests.hf_folders import write_folder

    folder, _ = write_folder(tmp_path / "llama", "llama")
    data = tmp_path / "chat.tsv"
    data.write_text("hello how are you\ti am fine thanks\nwhat is your name\tmy name is "
                    "today\n" * 20)
    cfg = lora_run(tmp_path, data, folder, prompt_len=24, response_len=8)
    out = train(cfg).out_dir
    lm = DiffusionLM.load(out, "cpu")
    assert is_lora(lm.model) and lm.objective.name == "diffusion"
    assert isinstance(lm.generate("hello", lm.decoding(length=6, steps=3))[0], str)


def test_lora_needs_a_model_to_adapt(tmp_path, pairs_tsv):
    with pytest.raises(ConfigError, match="init-from"):
        train(TrainConfig(data=[str(pairs_tsv)], out_dir=str(tmp_path / "x"), lora_rank=4,
                          max_steps=1, device="cpu", tensorboard=False))
