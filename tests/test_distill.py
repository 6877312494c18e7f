"""Distillation: a teacher's replies replace a chat directory's, prompts kept, trainable."""

import json

import pytest
import torch

from dlm import DataConfig, DiffusionLM, SampleConfig, distill, prepare, train
from dlm.errors import ConfigError, DataError
from dlm.model import Transformer

from .conftest import tiny_config, tiny_train_config


@pytest.fixture
def chat_dir(tmp_path):
    """40 distinct exchanges, a fifth of them held out."""
    source = tmp_path / "chats.tsv"
    source.write_text("".join(f"is {a} bigger than {b}\t{a} is {'more' if a > b else 'less'}\n"
                              for a in range(8) for b in range(5)))
    prepare(DataConfig(sources=[str(source)], out_dir=str(tmp_path / "chats"),
                       vocab_size=300, val_fraction=0.2), say=lambda _: None)
    return tmp_path / "chats"


def teacher_for(folder) -> DiffusionLM:
    from dlm.tokenizer import DLMTokenizer

    tok = DLMTokenizer.load(folder / "tokenizer.json")
    torch.manual_seed(0)
    model = Transformer(tiny_config(tok.vocab_size, causal=True)).eval()
    with torch.no_grad():  # sharper than at init, so replies differ from prompt to prompt
        for p in model.parameters():
            p.mul_(4.0)
    return DiffusionLM(model, tok, 16, 8, objective="ar")


def rows(path):
    return [json.loads(line)["messages"] for line in path.read_text().splitlines()]


def test_every_reply_is_the_teachers_and_every_prompt_is_kept(chat_dir, tmp_path):
    teacher = teacher_for(chat_dir)
    config = SampleConfig(length=6, temperature=0.0)
    # batches of 3 in prompt-length order: the replies must still land on their prompts
    result = distill(teacher, chat_dir, tmp_path / "out", config, batch_size=3,
                     say=lambda _: None)
    assert result.examples["validation"] >= 4
    for split in ("train", "validation"):
        source, made = rows(chat_dir / f"{split}.jsonl"), rows(tmp_path / "out" / f"{split}.jsonl")
        assert len(made) == len(source) == result.examples[split]
        for before, after in zip(source, made, strict=True):
            assert after[:-1] == before[:-1]
            assert after[-1]["role"] == "assistant"
            assert after[-1]["content"] == teacher.reply(before[:-1], config)
    replies = {m[-1]["content"] for m in rows(tmp_path / "out" / "train.jsonl")}
    assert len(replies) > 1  # not one reply for every prompt
    meta = json.loads((tmp_path / "out" / "data.json").read_text())
    assert meta["distilled"]["decoding"]["length"] == 6
    assert meta["examples"] == result.examples and meta["tokens"]["train"] > 0


def test_a_distilled_directory_trains_and_the_caps_hold(chat_dir, tmp_path):
    teacher = teacher_for(chat_dir)
    result = distill(teacher, chat_dir, tmp_path / "out", SampleConfig(length=6),
                     max_examples=5, max_validation=3, say=lambda _: None)
    assert result.examples == {"train": 5, "validation": 3}
    # the capped rows are drawn over the whole file (a `dlm data` file lists its sources
    # one after another), in file order, and drawn again the same with the same seed
    source = [m[:-1] for m in rows(chat_dir / "train.jsonl")]
    kept = [m[:-1] for m in rows(tmp_path / "out" / "train.jsonl")]
    at = [source.index(h) for h in kept]
    assert at == sorted(at) and at != list(range(5))
    again = distill(teacher, chat_dir, tmp_path / "again", SampleConfig(length=6),
                    max_examples=5, max_validation=3, say=lambda _: None)
    assert [m[:-1] for m in rows(again.out_dir / "train.jsonl")] == kept
    run = train(tiny_train_config(tmp_path / "student", tmp_path / "out", max_steps=2))
    assert (run.checkpoint / "config.json").is_file()


def test_bad_sources_are_clear_errors(chat_dir, tmp_path, pairs_tsv):
    teacher = teacher_for(chat_dir)
    with pytest.raises(DataError, match="not a `dlm data` directory"):
        distill(teacher, pairs_tsv.parent, tmp_path / "o1", say=lambda _: None)
    (tmp_path / "stories.txt").write_text("\n\n".join(f"story {i} ends." for i in range(20)))
    prepare(DataConfig(sources=[str(tmp_path / "stories.txt")], out_dir=str(tmp_path / "txt"),
                       vocab_size=300), say=lambda _: None)
    with pytest.raises(DataError, match="plain text"):
        distill(teacher, tmp_path / "txt", tmp_path / "o2", say=lambda _: None)
    with pytest.raises(DataError, match="fixed reply length"):
        distill(teacher, chat_dir, tmp_path / "o3", SampleConfig(length="auto"),
                say=lambda _: None)


def test_fine_tuning_may_add_positions_but_not_reshape_weights(tmp_path, pairs_tsv):
    base = train(tiny_train_config(tmp_path / "base", pairs_tsv, objective="ar", max_steps=1))
    longer = train(tiny_train_config(
        tmp_path / "longer", pairs_tsv, objective="ar", max_steps=1, init_from=str(
            base.checkpoint), response_len=48, model_overrides={"max_seq_len": 96}))
    assert DiffusionLM.load(longer.checkpoint).model.config.max_seq_len == 96
    with pytest.raises(ConfigError, match="d_model would change the shape"):
        train(tiny_train_config(tmp_path / "wider", pairs_tsv, objective="ar", max_steps=1,
                                init_from=str(base.checkpoint),
                                model_overrides={"d_model": 64}))


def test_the_teacher_replies_with_its_default_decoding_and_the_config_sets_over_it(
        chat_dir, tmp_path):
    """No decoding given: the teacher's own (`teacher.decoding()`), as every door starts
    from; `dlm distill`'s DistillConfig sets its fields over that."""
    from dataclasses import asdict

    from dlm.config import DistillConfig
    from dlm.training.distill import run_distill

    def decoding(out):
        return json.loads((out / "data.json").read_text())["distilled"]["decoding"]

    teacher = teacher_for(chat_dir)
    distill(teacher, chat_dir, tmp_path / "plain", max_examples=3, max_validation=2,
            say=lambda _: None)
    assert decoding(tmp_path / "plain") == asdict(teacher.decoding())
    teacher.save_pretrained(tmp_path / "teacher")
    config = DistillConfig(str(chat_dir), str(tmp_path / "teacher"), str(tmp_path / "set"),
                           length=6, repetition_penalty=1.0, max_examples=3,
                           max_validation=2)
    result = run_distill(config, "cpu", say=lambda _: None)
    assert result.examples == {"train": 3, "validation": 2}
    assert decoding(tmp_path / "set") == asdict(
        teacher.decoding(length=6, repetition_penalty=1.0, seed=0))


def test_a_human_share_writes_human_replies_beside_the_teachers(chat_dir, tmp_path):
    teacher = teacher_for(chat_dir)
    config = SampleConfig(length=6, temperature=0.0)
    result = distill(teacher, chat_dir, tmp_path / "out", config, max_examples=8,
                     max_validation=2, human_share=0.5, say=lambda _: None)
    alone = distill(teacher, chat_dir, tmp_path / "alone", config, max_examples=8,
                    max_validation=2, say=lambda _: None)
    source, made = rows(chat_dir / "train.jsonl"), rows(tmp_path / "out" / "train.jsonl")
    taught = rows(tmp_path / "alone" / "train.jsonl")
    assert result.examples == {"train": 16, "validation": 4}
    # the distilled rows are those distilled without a human share; the others are human
    # rows of other prompts, all in file order
    assert [m for m in made if m not in source] == taught
    human = [m for m in made if m in source]
    assert len(human) == 8 and not {m[0]["content"] for m in human} & {
        m[0]["content"] for m in taught}
    at = [source.index(m) for m in human]
    assert at == sorted(at)
    meta = json.loads((tmp_path / "out" / "data.json").read_text())
    assert meta["distilled"]["human"] == {"train": 8, "validation": 2}
    assert meta["distilled"]["human_share"] == 0.5 and alone.examples["train"] == 8
    with pytest.raises(DataError, match="human_share"):
        distill(teacher, chat_dir, tmp_path / "o", config, human_share=1.0, say=lambda _: None)
    with pytest.raises(DataError, match="rows are left"):  # every row distilled: none left
        distill(teacher, chat_dir, tmp_path / "o2", config, human_share=0.5,
                say=lambda _: None)
