"""The objective interface: the registry, what each objective declares, and that no
code outside `dlm/objectives/` branches on an objective's name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from dlm.errors import ConfigError
from dlm.objectives import REGISTRY, HeldOut, Needs, Objective, get_objective

SRC = Path(__file__).parents[1] / "src" / "dlm"


def test_every_registered_objective_declares_its_needs_and_summary():
    assert set(REGISTRY) >= {"diffusion", "block", "ar"}
    for name, objective in REGISTRY.items():
        assert isinstance(objective, Objective) and objective.name == name
        assert isinstance(objective.needs, Needs) and objective.summary
        assert str(objective) == name
    assert get_objective("ar").needs.causal and not get_objective("diffusion").needs.causal
    assert get_objective("diffusion").can_fill and not get_objective("ar").can_fill


def test_an_unknown_objective_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown objective 'sedd'.*diffusion.*block.*ar"):
        get_objective("sedd")


@pytest.mark.parametrize("name", ["ar", "block"])
def test_objectives_that_write_left_to_right_refuse_to_fill_or_take_constraints(name):
    with pytest.raises(ConfigError, match="cannot fill masks anywhere"):
        get_objective(name).refuse_fill()
    with pytest.raises(ConfigError, match="forced words"):
        get_objective(name).refuse_constraints()
    get_objective("diffusion").refuse_fill()  # full attention: no refusal


def test_start_from_checkpoints_by_attention():
    diffusion, block, ar = (get_objective(n) for n in ("diffusion", "block", "ar"))
    assert diffusion.can_start_from(causal=True) and diffusion.can_start_from(causal=False)
    assert diffusion.model_changes(causal=True) == {"causal": False, "shift": True}
    assert ar.can_start_from(causal=True) and not ar.can_start_from(causal=False)
    assert block.can_start_from(causal=False) and block.can_start_from(causal=True)


def test_ar_held_out_is_exact_and_scores_every_reply_token(tok):
    from dlm.data import EncodedSet
    from tests.test_eval import uniform_lm

    lm = uniform_lm(tok, causal=True)
    data = EncodedSet(torch.full((3, 4), 5), torch.full((3, 6), 7))
    held = lm.objective.held_out(dataclasses.replace(lm.context, batch_size=8), data, 1)
    assert isinstance(held, HeldOut) and held.exact and held.stderr == 0 and held.draws == 1
    assert held.nats_per_token == pytest.approx(torch.log(torch.tensor(tok.vocab_size)).item(),
                                                rel=1e-4)
    assert lm.objective.scored_tokens(data) == 18
    text = EncodedSet(torch.zeros(3, 0, dtype=torch.long), torch.full((3, 6), 7))
    assert lm.objective.scored_tokens(text) == 15  # a text row's first token has no context


NAME = rf"""["']({'|'.join(map(re.escape, REGISTRY))})["']"""
# `x == "dual"`, `"ar" != x` (every registered name), and an objective's name or setting
# compared with anything: `lm.objective.name != ...`, `cfg.objective == ...`
NAMES = re.compile(rf"(==|!=)\s*{NAME}|{NAME}\s*(==|!=)"
                   r"|\b(objective\.name|\.objective)\s*(==|!=|\bin\b)")


def test_no_code_outside_the_objectives_branches_on_an_objective_name():
    offenders = []
    for path in SRC.rglob("*.py"):
        if "objectives" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if NAMES.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
