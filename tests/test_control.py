"""Infilling, editing and constraints on a small untrained model: what they must keep,
where they write, and the errors they give."""

import json

import pytest
import torch

from dlm.cli.render import step_record
from dlm.config import SampleConfig
from dlm.control import Blank, Constraints, parse_template
from dlm.control.edit import char_span
from dlm.control.infill import check_template_result, encode_pieces, read_template
from dlm.diffusion import drop_prompts
from dlm.errors import ConfigError
from dlm.pipeline import DiffusionLM


@pytest.fixture
def lm(tiny_model, tok):
    return DiffusionLM(tiny_model, tok, max_prompt_len=16, default_length=12)


def test_parse_template_forms_and_errors():
    pieces = parse_template("a [MASK] b [MASK*3] c [MASK*?] d [MASK*?5]", max_span=7)
    assert pieces == ["a ", Blank(1), " b ", Blank(3), " c ", Blank(7, True), " d ",
                      Blank(5, True)]
    assert parse_template("[MASK]x") == [Blank(1), "x"]
    with pytest.raises(ConfigError, match=r"template:2:3: '\[MASK\*x\]' is not a blank"):
        parse_template("ok\nhi[MASK*x] there")
    with pytest.raises(ConfigError, match="holds no token"):
        parse_template("a [MASK*0]")


def test_infill_keeps_the_given_text_and_fills_exact_counts(lm, tok):
    template = "hello [MASK] are you, [MASK*3] thank you."
    seen = []
    result = lm.infill(template, config=SampleConfig(steps=4, seed=0), on_step=seen.append)
    first, second = result.fills
    assert result.text == f"hello {first} are you, {second} thank you."
    pieces = parse_template(template)
    ids, spans = encode_pieces(tok, pieces)
    assert [b - a for a, b, _ in spans] == [1, 3]
    for a, b, _ in spans:  # fixed blanks hold real tokens: no mask, no eos
        filled = result.ids[result.start + a: result.start + b]
        assert tok.mask_id not in filled and tok.eos_id not in filled
    given = [i for i, t in enumerate(ids) if t != tok.mask_id]
    assert [result.ids[result.start + i] for i in given] == [ids[i] for i in given]
    assert seen[0].tokens.shape[1] == len(ids) and (seen[-1].tokens != tok.mask_id).all()


def test_infill_variable_span_may_end_early_and_drops_its_eos(lm, tok):
    # A model that wants eos everywhere: a [MASK*?] span becomes empty, a [MASK] does not.
    class EosModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

        def forward(self, ids, key_padding):
            logits = torch.zeros(*ids.shape, tok.vocab_size)
            logits[..., tok.eos_id] = 5.0
            return logits

    lm.model = EosModel()
    result = lm.infill("the [MASK*?4] end [MASK]", config=SampleConfig(steps=5))
    assert result.fills[0] == "" and result.text.startswith("the  end ")
    assert result.fills[1] != ""


def test_infill_with_a_prompt_fills_blanks_in_the_prompt_too(lm, tok):
    result = lm.infill("i am [MASK]", prompt="how [MASK] you", config=SampleConfig(steps=3))
    assert result.prompt.startswith("how ") and result.prompt.endswith(" you")
    assert result.ids[result.start - 1] == tok.assistant_id  # the template is the reply
    assert result.ids[-1] == tok.eos_id  # closed like a training reply


def test_infill_errors(lm, tmp_path):
    with pytest.raises(ConfigError, match="no blank"):
        lm.infill("nothing to fill")
    with pytest.raises(ConfigError, match="one of the two"):
        read_template(None, None)
    with pytest.raises(ConfigError, match="missing.json: cannot read"):
        read_template(None, tmp_path / "missing.json")
    bad = tmp_path / "t.json"
    assert "not valid JSON" in check_template_result('{"a": oops}', bad)
    assert check_template_result('{"a": "ok"}', bad) is None


def test_json_template_keeps_its_structure(lm, tmp_path):
    path = tmp_path / "card.json"
    path.write_text('{"greeting": "[MASK*2]", "mood": "[MASK]"}\n')
    result = lm.infill(read_template(None, path), config=SampleConfig(steps=3, seed=1))
    assert result.text.startswith('{"greeting": "') and result.text.endswith('"}')
    assert '", "mood": "' in result.text


def test_edit_regenerates_only_the_span(lm):
    text = "Hello there, how are you?"
    seen = []
    result = lm.edit(text, span="there", config=SampleConfig(steps=2, seed=0),
                     on_step=seen.append)
    assert result.before == text
    assert result.after.startswith("Hello") and result.after.endswith(", how are you?")
    assert len(result.masked) >= 1
    assert (seen[0].tokens == lm.tokenizer.mask_id).sum() == len(result.masked)
    kinds = {kind for _, kind in result.diff()}
    assert "same" in kinds
    assert result.diff_text().startswith("Hello")


def test_edit_by_range_new_length_and_low_confidence(lm):
    text = "how are you doing"
    assert char_span(text, "4:7") == (4, 7)
    longer = lm.edit(text, span="4:7", length=3, config=SampleConfig(steps=3, seed=0))
    assert longer.after.startswith("how") and longer.after.endswith(" you doing")
    assert len(longer.masked) == 3
    low = lm.edit(text, low_confidence=2, config=SampleConfig(steps=2))
    assert len(low.masked) == 2
    kept = [i for i in range(len(low.before_tokens)) if i not in low.masked]
    assert [low.after_tokens[i] for i in kept] == [low.before_tokens[i] for i in kept]


@pytest.mark.parametrize("kwargs,message", [
    ({}, "say what to edit"), ({"span": "zzz"}, "matches nothing"),
    ({"span": "5:99"}, "within the text"), ({"span": "("}, "neither a range"),
    ({"span": "are", "low_confidence": 2}, "say what to edit")])
def test_edit_errors(lm, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        lm.edit("how are you", **kwargs)


def test_forced_and_required_words_and_exact_length(lm, tok):
    constraints = Constraints.parse(force=["2:hello"], require=["thank you"])
    ids = lm.reply_ids([[{"role": "user", "content": "hi"}]], SampleConfig(length=12, steps=4),
                       constraints=constraints)[0].tolist()
    hello = tok.encode("hello")
    assert ids[2: 2 + len(hello)] == hello
    thanks = tok.encode("thank you")
    places = [i for i in range(len(ids)) if ids[i: i + len(thanks)] == thanks]
    assert places
    assert tok.eos_id not in ids[: max(places[0] + len(thanks), 2 + len(hello))]
    reply = lm.generate("hi", SampleConfig(length=12, steps=4), constraints=constraints)[0]
    assert "hello" in reply and "thank you" in reply
    exact = lm.reply_ids([[{"role": "user", "content": "hi"}]],
                         SampleConfig(length=9, steps=3, eos="ban"))[0].tolist()
    assert len(exact) == 9 and tok.eos_id not in exact


@pytest.mark.parametrize("force,require,message", [
    (["x:hello"], None, "POSITION:WORD"), (["11:thank you"], None, "do not fit"),
    (["1:thank you", "2:hello"], None, "overlaps"),
    (["1:hello", "1:bye"], None, "forced twice"), (None, [""], "needs a word")])
def test_constraint_errors(lm, force, require, message):
    with pytest.raises(ConfigError, match=message):
        constraints = Constraints.parse(force, require)
        lm.generate("hi", SampleConfig(length=12, steps=4), constraints=constraints)


def test_trace_records_are_json_with_every_piece(lm):
    seen = []
    lm.generate("hello", SampleConfig(length=12, steps=4, remask=0.9, temperature=1.0, seed=0,
                                      eos="ban"), on_step=seen.append)
    records = [step_record(s, 0, lm.tokenizer) for s in seen]
    json.dumps(records)
    assert records[0]["text"].split() == ["[MASK]"] * 12 and records[0]["nfe"] == 0
    assert [r["step"] for r in records] == list(range(len(records)))
    assert sum(r["committed"] for r in records) - sum(r["remasked"] for r in records) == 12
    assert {kind for r in records for _, kind, _ in r["pieces"]} == {"mask", "new", "old",
                                                                      "remasked"}
    assert any("[REMASK]" in r["text"] for r in records)


def test_cfg_dropout_drops_whole_prompts_at_the_rate():
    ids = torch.arange(2, 12).repeat(4000, 1)  # (B, 10)
    maskable = torch.zeros_like(ids, dtype=torch.bool)
    maskable[:, 6:] = True
    padding = torch.ones_like(maskable)
    padding[:, 0] = False  # a pad position stays a pad
    out = drop_prompts(ids, maskable, padding, 0.1, mask_id=1,
                       generator=torch.Generator().manual_seed(0))
    dropped = (out[:, 1:6] == 1).all(1)
    assert ((out[:, 1:6] == 1).any(1) == dropped).all()  # whole prompts or nothing
    assert torch.equal(out[:, 6:], ids[:, 6:]) and torch.equal(out[:, 0], ids[:, 0])
    assert 0.08 < dropped.float().mean() < 0.12
    assert torch.equal(drop_prompts(ids, maskable, padding, 0.0, 1), ids)
