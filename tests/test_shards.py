"""Token shards, the samplers that read them, pretraining then fine-tuning, hub-style save/load."""

import json

import numpy as np
import pytest
import torch

from dlm.data.batch_samplers import ChatSampler, PackedSampler, validation_set
from dlm.data.shard_cache import build_shards, ensure_shards, stale_reason
from dlm.data.shards import TokenShard
from dlm.tokenizer import DLMTokenizer

from .conftest import PAIRS, tiny_train_config


def chat_jsonl(path, pairs):
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": p}, {"role": "assistant", "content": r}]}) + "\n"
        for p, r in pairs))
    return path


def text_jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


@pytest.fixture
def chat_shards(tmp_path, tok):
    paths = {"train": chat_jsonl(tmp_path / "train.jsonl", PAIRS * 3),
             "validation": chat_jsonl(tmp_path / "validation.jsonl", PAIRS[:3])}
    build_shards(paths, tok, tmp_path / "tokens")
    return tmp_path / "tokens"


def test_chat_shards_hold_exactly_the_chat_template_ids(chat_shards, tok):
    meta = json.loads((chat_shards / "meta.json").read_text())
    assert meta["kind"] == "chat" and meta["splits"]["train"]["dtype"] == "uint16"
    assert meta["tokenizer"] == tok.fingerprint()
    shard = TokenShard(chat_shards, "train")
    assert len(shard) == 30
    for i, (p, r) in enumerate(PAIRS):
        prompt, response = shard.example(i)
        enc = tok.encode_chat([{"role": "user", "content": p},
                               {"role": "assistant", "content": r}])
        assert prompt.tolist() == enc.prompt_ids and response.tolist() == enc.response_ids
    assert meta["splits"]["train"]["tokens"] == int(shard.index[-1, 2])


def test_text_shards_join_documents_with_eos(tmp_path, tok):
    docs = ["hello there", "how are you", "good morning"]
    build_shards({"train": text_jsonl(tmp_path / "t.jsonl", docs)}, tok, tmp_path / "s")
    shard = TokenShard(tmp_path / "s", "train")
    expected = [i for d in docs for i in tok.encode(d) + [tok.eos_id]]
    assert shard.kind == "text" and np.asarray(shard.tokens).tolist() == expected


def test_mixing_chat_and_text_in_one_split_is_an_error(tmp_path, tok):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"text": "plain"}) + "\n" + json.dumps(
        {"prompt": "a", "response": "b"}) + "\n")
    with pytest.raises(Exception, match="mixes chat and plain text"):
        build_shards({"train": path}, tok, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_changed_tokenizer_or_source_invalidates_the_cache_with_a_reason(chat_shards, tok,
                                                                           tmp_path):
    paths = {"train": tmp_path / "train.jsonl", "validation": tmp_path / "validation.jsonl"}
    assert stale_reason(chat_shards, paths, tok) is None
    other = DLMTokenizer.train(["completely different words here"] * 5, vocab_size=280)
    assert "tokenizer changed" in stale_reason(chat_shards, paths, other)
    chat_jsonl(paths["train"], PAIRS)
    assert "train.jsonl changed since it was tokenized" in stale_reason(chat_shards, paths, tok)
    said = []
    meta = ensure_shards(paths, tok, chat_shards, said.append)
    assert said and "changed" in said[0] and meta["splits"]["train"]["examples"] == 10
    said.clear()
    ensure_shards(paths, tok, chat_shards, said.append)
    assert said == []  # reused


def test_chat_sampler_pads_cuts_drops_and_replays_from_its_state(chat_shards, tok):
    shard = TokenShard(chat_shards, "train")
    s = ChatSampler(shard, 7, prompt_len=12, response_len=4, pad_id=tok.pad_id,
                    eos_id=tok.eos_id, seed=1)
    long = int((shard.response_lengths() > 4).sum())
    assert s.truncated == long > 0 and len(s) == 30
    batch = s.next()
    assert batch.maskable[:, -4:].all() and not batch.maskable[:, :-4].any()
    dropping = ChatSampler(shard, 7, 12, 4, tok.pad_id, tok.eos_id, drop_long=True)
    assert dropping.dropped == long and len(dropping) == 30 - long
    for _ in range(5):  # crosses an epoch boundary
        s.next()
    state = s.state_dict()
    expected = [s.next().ids for _ in range(3)]
    again = ChatSampler(shard, 7, 12, 4, tok.pad_id, tok.eos_id, seed=1)
    again.load_state_dict(state)
    for want in expected:
        assert torch.equal(again.next().ids, want)


def test_packed_sampler_windows_short_batches_and_resume(tmp_path, tok):
    docs = [" ".join(p) for p in PAIRS] * 20
    build_shards({"train": text_jsonl(tmp_path / "t.jsonl", docs)}, tok, tmp_path / "s")
    shard = TokenShard(tmp_path / "s", "train")
    s = PackedSampler(shard, batch_size=4, seq_len=16, short_fraction=0.0, seed=3)
    batch = s.next()
    assert batch.ids.shape == (4, 16) and batch.maskable.all() and batch.key_padding is None
    flat = np.asarray(shard.tokens).tolist()
    row = batch.ids[0].tolist()
    assert any(flat[i : i + 16] == row for i in range(len(flat) - 15))  # a real window
    short = PackedSampler(shard, 4, 16, short_fraction=1.0, seed=3)
    lengths = {short.next().ids.shape[1] for _ in range(20)}
    assert max(lengths) <= 16 and len(lengths) > 3
    state = s.state_dict()
    want = s.next().ids
    resumed = PackedSampler(shard, 4, 16, short_fraction=0.0, seed=3)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.next().ids, want)


def test_text_validation_is_the_first_windows(tmp_path, tok):
    build_shards({"validation": text_jsonl(tmp_path / "v.jsonl", ["hello there"] * 30)}, tok,
                 tmp_path / "s")
    shard = TokenShard(tmp_path / "s", "validation")
    val = validation_set(shard, 5, 8, 8, 10, tok.pad_id, tok.eos_id, False)
    assert val.prompts.shape == (5, 0) and val.responses.shape == (5, 10)
    assert val.responses.flatten().tolist() == np.asarray(shard.tokens[:50]).tolist()


# --------------------------------------------------- pretraining, then fine-tuning
@pytest.mark.slow
def test_pretrain_on_text_then_fine_tune_on_chat_with_init_from(tmp_path):
    from dlm.config import DataConfig
    from dlm.data.prepare import prepare
    from dlm.training.train import Trainer, train

    (tmp_path / "story.txt").write_text("\n\n".join(
        f"the cat number {i} sat on the mat and looked at the dog." for i in range(60)))
    prepare(DataConfig(sources=[str(tmp_path / "story.txt")], out_dir=str(tmp_path / "text"),
                       vocab_size=300), say=lambda _: None)
    pre_cfg = tiny_train_config(tmp_path / "pre", tmp_path / "text", seq_len=24,
                                short_seq_fraction=0.5)
    pre = train(pre_cfg)
    assert pre.steps == 6 and pre.history and pre.history[-1]["val_nelbo"] > 0

    chat = tmp_path / "chat.jsonl"
    chat_jsonl(chat, PAIRS * 4)
    fine_cfg = tiny_train_config(tmp_path / "fine", chat, init_from=str(pre.checkpoint))
    said = []

    class Notes:
        def __getattr__(self, name):
            return (lambda text: said.append(text)) if name == "on_note" else \
                (lambda *a, **k: None)

    trainer = Trainer(fine_cfg, Notes())
    pretrained = torch.load(pre.checkpoint / "train_state.pt", weights_only=True)
    assert trainer.step == 0 and pretrained["step"] == 6
    from dlm.checkpoint import load_checkpoint
    ckpt = load_checkpoint(pre.checkpoint)
    for (name, a), b in zip(trainer.model.state_dict().items(),
                            ckpt.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # starts from the pretrained weights
    assert trainer.data.tokenizer.fingerprint() == ckpt.tokenizer.fingerprint()
    assert trainer.data.kind == "chat" and said  # tokenized with the checkpoint's tokenizer
    result = trainer.run()
    assert result.steps == 6


def test_init_from_refuses_a_canvas_longer_than_the_model(tmp_path, pairs_tsv):
    from dlm.errors import ConfigError
    from dlm.training.train import train

    base = train(tiny_train_config(tmp_path / "a", pairs_tsv, max_steps=1))
    with pytest.raises(ConfigError, match="longer than the"):
        train(tiny_train_config(tmp_path / "b", pairs_tsv, init_from=str(base.checkpoint),
                                prompt_len=100, response_len=100))


# ------------------------------------------------------------------ hub layout
def test_save_pretrained_and_from_pretrained_round_trip(tmp_path, tiny_model, tok):
    from dlm import DiffusionLM, SampleConfig

    lm = DiffusionLM(tiny_model, tok, max_prompt_len=16, default_length=8)
    lm.save_pretrained(tmp_path / "hub")
    files = {p.name for p in (tmp_path / "hub").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert "library_name: dlm" in (tmp_path / "hub" / "README.md").read_text()
    back = DiffusionLM.from_pretrained(tmp_path / "hub", device="cpu")
    assert (back.max_prompt_len, back.default_length) == (16, 8)
    cfg = SampleConfig(length=8, steps=4)
    assert back.generate(["hello", "bye"], cfg) == lm.generate(["hello", "bye"], cfg)
    # saved again from a loaded model: the same files, training settings kept
    back.save_pretrained(tmp_path / "again")
    meta = json.loads((tmp_path / "again" / "config.json").read_text())
    assert meta["train"]["response_len"] == 8 and meta["format_version"] == 1


def test_loader_bench_cuts_or_repeats_the_corpus_and_measures_it(chat_shards, tmp_path):
    from dlm.bench.loader import measure, synthesize

    src_tokens = json.loads((chat_shards / "meta.json").read_text())["splits"]["train"]["tokens"]
    big = synthesize(chat_shards, tmp_path / "big", src_tokens * 3 + 5)
    shard = TokenShard(big, "train")
    assert shard.n_tokens >= src_tokens * 3 + 5 and len(shard) >= 90
    first, again = shard.example(0), shard.example(30)  # the repeat starts where the source ends
    assert first[0].tolist() == again[0].tolist() and first[1].tolist() == again[1].tolist()
    small = TokenShard(synthesize(chat_shards, tmp_path / "small", 40), "train")
    assert small.n_tokens <= 40 + 20 and len(small) < 30
    result = measure(big, "chat", batch_size=4, prompt_len=8, response_len=8, batches=20)
    assert result["batches_per_s"] > 0 and result["peak_rss_mib"] > result["file_mapped_mib"]
