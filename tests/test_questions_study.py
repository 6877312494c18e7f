"""The study script's own logic (benchmarks/questions/study.py): its tables state their
noise, and `--compare` finds every figure two runs disagree on (timings aside)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).parents[1] / "benchmarks" / "questions" / "study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("questions_study", STUDY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_tables_carry_the_standard_error_and_mark_missing_figures(study):
    rows = [{"steps": 4, "gen_ppl": 12.345, "gen_ppl_se": 0.5, "f1": None},
            {"steps": 8, "gen_ppl": float("nan"), "gen_ppl_se": 0.1, "f1": 0.25}]
    text = study.table(rows, [("steps", "steps", "d"), ("PPL", "gen_ppl", ".1f", "gen_ppl_se"),
                              ("F1", "f1", ".2f")])
    assert text.splitlines()[2] == "| 4 | 12.3 ± 0.5 | — |"
    assert text.splitlines()[3] == "| 8 | — | 0.25 |"


def test_beyond_noise_needs_twice_the_joint_standard_error(study):
    a, b = {"f1": 0.30, "f1_se": 0.03}, {"f1": 0.20, "f1_se": 0.04}  # joint error 0.05
    assert not study.beyond_noise(a, b, "f1")
    assert study.beyond_noise({**a, "f1": 0.31}, b, "f1")


def test_compare_counts_identical_figures_and_ignores_timings_and_replies(study, tmp_path):
    run = {"steps": {"rows": [{"steps": 1, "gen_ppl": 50.0, "seconds_per_reply": 0.1,
                               "replies": ["hi"]}]},
           "overfit": {"ar": {"best_epoch": 20.0, "seconds": 3.0}}}
    other = json.loads(json.dumps(run))
    other["steps"]["rows"][0]["seconds_per_reply"] = 0.2  # timings differ run to run
    other["steps"]["rows"][0]["replies"] = ["hello"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(run))
    b.write_text(json.dumps(other))
    assert "| steps | 2 | 2 | 0.00e+00 |" in study.compare(a, b)
    other["overfit"]["ar"]["best_epoch"] = 21.0
    b.write_text(json.dumps(other))
    assert "| overfit | 1 | 0 | 5.00e-02 |" in study.compare(a, b)


def gap_rows(gaps):
    return [{"step": 100 * (i + 1), "gen_ppl": 100.0 / (i + 1), "relevance_gap": g,
             "relevance_gap_se": 0.01} for i, g in enumerate(gaps)]


def test_relevance_counts_only_a_crossing_that_holds_to_the_end(study):
    once = study.answer_relevance({"rows": gap_rows([0.0, 0.05, 0.0, 0.01])})
    assert "does not beat the shuffled-reference control for good" in once
    assert "only step 200 crosses" in once
    held = study.answer_relevance({"rows": gap_rows([0.0, 0.05, 0.03, 0.04])})
    assert "for good from step 200" in held


def test_remasking_is_judged_against_its_noise(study):
    row = {"remask": 0.0, "gen_ppl": 10.0, "gen_ppl_se": 1.0, "stutter": 0.0,
           "broken_end": 0.1, "distinct_2": 0.3}
    same = {**row, "remask": 0.1, "gen_ppl": 11.0}  # 1 < 2 * sqrt(2)
    worse = {**row, "remask": 0.3, "gen_ppl": 14.0}
    text = study.answer_remask({"rows": [row, same, worse]})
    assert text.startswith("Only noise") and "(no change beyond the noise)" in text
    assert "14.0 ± 1.0 at 0.3 (worse)" in text
    better = {**row, "remask": 0.1, "gen_ppl": 5.0}
    assert study.answer_remask({"rows": [row, better]}).startswith("It helps")
