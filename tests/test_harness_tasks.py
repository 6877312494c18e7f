"""The `dlm_local` lm-eval tasks (src/dlm/evaluation/harness_tasks): lm-eval's TaskManager
finds them, their documents are built from ../shared/data at run time, deterministically,
and lm-eval's own `hf` backend runs them end to end on a tiny random Llama folder.
Skipped when lm-eval or the shared corpora are absent."""

from __future__ import annotations

import pytest

from dlm.errors import DataError
from dlm.evaluation.harness_tasks import TAG, TASK_NAMES, TASKS_DIR
from dlm.evaluation.harness_tasks import utils as harness

from .conftest import SHARED_DATA

pytest.importorskip("lm_eval", reason="lm-eval is not installed")
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                reason=f"{SHARED_DATA} (the shared corpora) is absent")


@pytest.fixture
def shared(monkeypatch):
    monkeypatch.setenv(harness.ENV, str(SHARED_DATA))


def local_tasks(**kw):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, **kw)


def built(names, **kw):
    return local_tasks(**kw).load(list(names))["tasks"]


def test_the_task_manager_lists_the_four_tasks_beside_lm_evals_own():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR))
    assert set(TASK_NAMES) <= set(manager.all_subtasks)
    assert TAG in manager.all_tags
    assert "wikitext" in manager.all_subtasks  # the built-in tasks are still there


@needs_data
def test_the_tag_expands_to_the_four_tasks(shared):
    assert sorted(built([TAG])) == sorted(TASK_NAMES)


def test_the_data_root_is_the_environment_variable_else_shared_data(monkeypatch, tmp_path):
    monkeypatch.delenv(harness.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert harness.data_root() == (tmp_path / ".." / "shared" / "data").resolve()
    monkeypatch.setenv(harness.ENV, str(tmp_path / "corpora"))
    assert harness.data_root() == tmp_path / "corpora"
    assert harness.data_root(tmp_path / "given") == tmp_path / "given"


def test_a_missing_corpus_is_an_error_naming_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv(harness.ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"wikitext2/valid\.txt.*DLM_DATA_DIR"):
        harness.wikitext2_docs()
    with pytest.raises(DataError, match=r"dailydialog/validation\.zip"):
        built(["dlm_dailydialog_next"])


@needs_data
def test_the_next_reply_task_has_four_distinct_choices_and_a_varying_gold(shared):
    task = built(["dlm_dailydialog_next"])["dlm_dailydialog_next"]
    docs = list(task.eval_docs)
    assert len(docs) == harness.MC_DOCS
    for doc in docs:
        choices = task.doc_to_choice(doc)
        gold = task.doc_to_target(doc)
        assert len(choices) == 4 and len({" ".join(c.lower().split()) for c in choices}) == 4
        assert choices[gold] == doc["reply"]
        context = task.doc_to_text(doc)
        assert context.endswith(("\nA:", "\nB:")) and context.count("\n") <= harness.CONTEXT_TURNS
    golds = [task.doc_to_target(d) for d in docs]
    assert set(golds) == {0, 1, 2, 3} and len(set(golds[:8])) > 1
    assert min(golds.count(g) for g in range(4)) > len(docs) / 8
    # the request lm-eval makes: context, then " " and the choice
    (request, *_) = task.construct_requests(docs[0], task.doc_to_text(docs[0]))
    assert request.arguments == (docs[0]["context"], " " + docs[0]["choices"][0])
    again = list(built(["dlm_dailydialog_next"])["dlm_dailydialog_next"].eval_docs)
    assert again == docs


@needs_data
def test_the_rolling_tasks_score_whole_documents(shared):
    tasks = built(["dlm_wikitext2_rolling", "dlm_tinystories_rolling"])
    wiki = list(tasks["dlm_wikitext2_rolling"].eval_docs)
    assert len(wiki) == 60 and wiki[0]["title"] == "Homarus gammarus"
    assert all(d["text"].startswith("= ") and " @-@ " not in d["text"] for d in wiki)
    stories = list(tasks["dlm_tinystories_rolling"].eval_docs)
    assert len(stories) == harness.STORIES and stories[-1]["story"] == 1091
    assert all(d["text"] == d["text"].strip() and len(d["text"]) > 200 for d in stories)
    for name, docs in [("dlm_wikitext2_rolling", wiki), ("dlm_tinystories_rolling", stories)]:
        task = tasks[name]
        assert task.doc_to_target(docs[0]) == docs[0]["text"]
        assert task.construct_requests(docs[0], "").arguments == (docs[0]["text"],)
        assert not task.config.should_decontaminate
    assert harness.wikitext2_docs() == wiki and harness.tinystories_docs() == stories


@needs_data
def test_the_seed_tasks_prompt_the_instruction_and_score_the_output(shared):
    task = built(["dlm_seed_tasks_generate"])["dlm_seed_tasks_generate"]
    docs = list(task.eval_docs)
    assert len(docs) == 175
    with_input = next(d for d in docs if "\n\n" in d["prompt"])
    assert task.doc_to_text(with_input) == with_input["prompt"] + "\n\nAnswer:"
    kwargs = task.construct_requests(docs[0], task.doc_to_text(docs[0])).arguments[1]
    assert kwargs["until"] == ["\n\n"] and kwargs["max_gen_toks"] == 64
    assert not kwargs["do_sample"]
    target = docs[0]["target"]
    assert task.process_results(docs[0], [" " + target]) == {"rougeL": 1.0, "f1": 1.0}
    assert task.process_results(docs[0], ["zebra"]) == {"rougeL": 0.0, "f1": 0.0}
    half = task.process_results({"target": "the cat sat down"}, ["the cat"])
    assert half["f1"] == pytest.approx(2 / 3) and half["rougeL"] == pytest.approx(2 / 3)


@needs_data
def test_data_dir_in_the_task_managers_metadata_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(harness.ENV, "/nonexistent")
    task = built(["dlm_seed_tasks_generate"], metadata={"data_dir": str(SHARED_DATA)})
    assert len(task["dlm_seed_tasks_generate"].eval_docs) == 175


@needs_data
def test_lm_evals_hf_backend_runs_the_tasks_on_a_tiny_llama(shared, tmp_path):
    import lm_eval

    from .hf_folders import write_folder

    folder, _ = write_folder(tmp_path / "llama", "llama")
    names = ["dlm_dailydialog_next", "dlm_tinystories_rolling", "dlm_seed_tasks_generate"]
    # max_length past the folder's 128 positions (rotary: no hard limit): the tiny byte-level
    # tokenizer makes some DailyDialog choices longer than 128 tokens
    args = f"pretrained={folder},dtype=float32,max_length=512"
    out = lm_eval.simple_evaluate(model="hf", model_args=args,
                                  tasks=names, limit=8, task_manager=local_tasks(),
                                  device="cpu", batch_size=1)
    results = out["results"]
    assert 0 <= results["dlm_dailydialog_next"]["acc,none"] <= 1
    assert 0 <= results["dlm_dailydialog_next"]["acc_norm,none"] <= 1
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert results["dlm_tinystories_rolling"][f"{metric},none"] > 0
    assert 0 <= results["dlm_seed_tasks_generate"]["rougeL,none"] <= 1
    assert 0 <= results["dlm_seed_tasks_generate"]["f1,none"] <= 1
    assert out["n-samples"]["dlm_dailydialog_next"]["effective"] == 8
