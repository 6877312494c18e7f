"""The commands, run in-process through Typer's test runner."""

import json

import pytest
from typer.testing import CliRunner

from dlm.checkpoint import save_checkpoint
from dlm.cli.app import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained through the CLI on the embedded default corpus, a few steps."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", "--out-dir", out, "--max-steps", 3, "--batch-size", 8,
                    "--eval-every", 0, "--save-every", 0, "--vocab-size", 512, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out


def test_train_through_the_cli_writes_a_checkpoint_and_metrics(trained):
    assert (trained / "last" / "model.safetensors").is_file()
    assert (trained / "last" / "train_state.pt").is_file()
    assert len((trained / "metrics.jsonl").read_text().splitlines()) >= 3


def test_generate_with_trace_shows_masks_then_text(trained):
    result = invoke("generate", "--ckpt", trained, "--prompt", "hello", "--steps", 4,
                    "--length", 8, "--trace")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "> hello"
    # the run kept its best validation checkpoint, and the command says it uses it
    assert f"using {trained / 'best'} (step " in result.stderr
    assert lines[1].startswith("t=4") and lines[1].count("[MASK]") == 8
    assert any(line.startswith("t=0") for line in lines)


def test_generate_with_rules_constraints_and_a_trace_file(trained, tmp_path):
    trace = tmp_path / "trace.jsonl"
    result = invoke("generate", "--ckpt", trained, "--prompt", "hello", "--prompt", "hi",
                    "--steps", 8, "--length", 8, "--rule", "threshold", "--threshold", 0.5,
                    "--remask", 0.3, "--eos", "ban", "--force", "0:good", "--require", "you",
                    "--trace-file", trace)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {r["row"] for r in records} == {0, 1}
    last = [r for r in records if r["row"] == 0][-1]
    assert "[MASK]" not in last["text"] and last["text"].startswith("good")
    assert "you" in last["text"]


def test_infill_and_edit_commands(trained, tmp_path):
    result = invoke("infill", "--ckpt", trained, "how [MASK] you, [MASK*3] today?", "--steps",
                    3, "--trace")
    assert result.exit_code == 0, result.output
    assert "[MASK]" in result.stdout.splitlines()[1]  # the trace starts from the blanks
    final = result.output.strip().splitlines()[-1]
    assert final.startswith("how ") and final.endswith(" today?")
    template = tmp_path / "card.json"
    template.write_text('{"name": "[MASK*2]"}')
    result = invoke("infill", "--ckpt", trained, "--template", template, "--steps", 2)
    assert result.exit_code == 0, result.output
    assert '{"name": "' in result.output
    result = invoke("edit", "--ckpt", trained, "--text", "how are you today", "--span", "are",
                    "--steps", 2, "--trace")
    assert result.exit_code == 0, result.output
    assert "before: how are you today" in result.output and "diff (plain):" in result.output
    one_line_error(invoke("infill", "--ckpt", trained, "no blanks"), "no blank")
    one_line_error(invoke("edit", "--ckpt", trained, "--text", "hi"), "say what to edit")
    one_line_error(invoke("generate", "--ckpt", trained, "--prompt", "hi", "--rule", "best"),
                   "unknown commit rule")
    one_line_error(invoke("train", "--out-dir", tmp_path / "x", "--cfg-dropout", 1.5),
                   "cfg_dropout must be in [0, 1)")


def test_sweep_counts_model_calls_per_reply(trained, tmp_path):
    result = invoke("sweep", "--ckpt", trained, "--rule", "low_confidence", "--rule",
                    "threshold", "--steps", 2, "--steps", 4, "--remask", 0, "--remask", 0.5,
                    "--threshold", 0.5, "--length", 8, "--prompts", 4, "--batch-size", 2,
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    fixed = [r for r in rows if r["rule"] == "low_confidence"]
    assert [(r["steps"], r["remask"]) for r in fixed] == [(2, 0), (4, 0), (2, 0.5), (4, 0.5)]
    for r in fixed:
        assert r["nfe"] == r["steps"] and r["batch_calls"] == 2 * r["steps"]
        assert r["quality"]["replies"] == 4 and r["quality"]["gen_ppl"] is None
    assert fixed[0]["tokens_per_call"] == 4.0  # 8 tokens in 2 calls, nothing re-masked
    (threshold,) = [r for r in rows if r["rule"] == "threshold"]
    assert 1 <= threshold["nfe"] <= 8 and threshold["tokens_per_call"] * threshold["nfe"] == 8
    assert "| threshold 0.5 | 8 |" in (tmp_path / "sweep.md").read_text()
    # the settings not swept are the checkpoint's default decoding
    from dlm import DiffusionLM

    decoding = DiffusionLM.load(trained, "cpu").decoding()
    meta = json.loads((tmp_path / "sweep.json").read_text())["meta"]
    assert (meta["eos"], meta["repetition_penalty"], meta["temperature"]) == (
        decoding.eos, decoding.repetition_penalty, decoding.temperature)


def test_chat_trace_file_tags_every_turn(trained, tmp_path):
    trace = tmp_path / "chat.jsonl"
    result = runner.invoke(app, ["chat", "--ckpt", str(trained), "--delay", "0", "--length", "6",
                                 "--steps", "3", "--trace", "--trace-file", str(trace)],
                           input="hello\nhi again\n/quit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("t=0") == 2  # each reply's steps, printed after it
    turns = [json.loads(line)["turn"] for line in trace.read_text().splitlines()]
    assert turns == [0] * 4 + [1] * 4  # the start and three steps per reply


def test_chat_repl_replies_and_takes_commands(trained):
    result = runner.invoke(app, ["chat", "--ckpt", str(trained), "--delay", "0", "--length", "8"],
                           input="hello\n/steps 4\n/temp nope\n/reset\nhi again\n/quit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("dlm> ") == 2
    assert "steps = 4" in result.output and "history cleared" in result.output
    assert "/temp: could not convert" in result.output


def test_dry_run_prints_shapes_and_writes_nothing(tmp_path):
    result = invoke("train", "--dry-run", "--out-dir", tmp_path / "x", "--batch-size", 4,
                    "--vocab-size", 512)
    assert result.exit_code == 0, result.output
    assert "parameters:" in result.output and "initial_loss:" in result.output
    assert "batch_ids: (4," in result.output
    assert not (tmp_path / "x").exists()


def test_demo_trains_caches_and_reuses(tmp_path):
    first = invoke("demo", "--cache-dir", tmp_path, "--max-steps", 2, "--no-chat")
    assert first.exit_code == 0, first.output
    from dlm.shipped import SHIPPED_DIR

    canvas = json.loads((SHIPPED_DIR / "config.json").read_text())["train"]["response_len"]
    assert "> hello" in first.output and f"t={canvas} " in first.output  # its trace
    second = invoke("demo", "--cache-dir", tmp_path, "--max-steps", 2, "--no-chat")
    assert second.exit_code == 0 and "using the demo model" in second.output


def test_config_file_and_flags(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"batch_size": 4, "vocab_size": 400, "nonsense": 1}))
    result = invoke("train", "--config", config, "--dry-run")
    assert result.exit_code == 2 and "unknown field(s) nonsense" in result.output


# ---- errors: one line, exit code 2, no traceback -------------------------------------------
def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    # the note that a run's best/ checkpoint is used may precede the error
    lines = [line for line in result.output.splitlines()
             if line.strip() and not line.startswith("using ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


def test_bad_data_file(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("this line has no tab\nnor this one\n")
    one_line_error(invoke("train", "--data", bad, "--dry-run"), f"{bad}", "no usable examples")


def test_empty_prompt(trained):
    one_line_error(invoke("generate", "--ckpt", trained, "--prompt", "  "), "prompt is empty")


def test_missing_checkpoint(tmp_path):
    one_line_error(invoke("generate", "--ckpt", tmp_path / "nope", "--prompt", "hi"),
                   "no checkpoint here", "dlm train")


def test_checkpoint_from_another_version(tmp_path, tiny_model, tok):
    save_checkpoint(tmp_path / "ck", tiny_model, tok)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["format_version"] = 0
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    one_line_error(invoke("generate", "--ckpt", tmp_path / "ck", "--prompt", "hi"),
                   "retrain it with this version")


def test_every_command_has_help():
    for command in ["train", "generate", "chat", "demo", "infill", "edit"]:
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_data_then_train_on_the_prepared_directory(tmp_path):
    rows = [{"prompt": f"question {i}?", "response": f"answer {i}."} for i in range(40)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "pairs.tsv").write_text("".join(f"hi {i}\thello {i}\n" for i in range(40)))
    result = invoke("data", tmp_path / "qa.jsonl", tmp_path / "pairs.tsv", "--out",
                    tmp_path / "out", "--vocab-size", 300, "--mix", "qa=0.75,pairs=0.25")
    assert result.exit_code == 0, result.output
    assert "mix" in result.output and "sampled out" in result.output
    assert "train: 76 examples" in result.output  # 38 + 38 kept, resampled 3:1
    result = invoke("train", "--data", tmp_path / "out", "--out-dir", tmp_path / "run",
                    "--max-steps", 2, "--batch-size", 4, "--eval-every", 0, "--device", "cpu",
                    "--prompt-len", 16, "--response-len", 8)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "data").exists()  # the prepared tokens were used as they are


@pytest.mark.parametrize("args,message", [
    (["missing.jsonl"], "no such file or folder, not a hub id"),
    (["x.tsv", "--mix", "nope=1"], "'nope' matches no source"),
    (["x.tsv", "--context", "all"], "unknown context 'all'"),
])
def test_data_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "x.tsv").write_text("".join(f"hi {i}\thello {i}\n" for i in range(10)))
    args = [str(tmp_path / a) if a.endswith((".jsonl", ".tsv")) else a for a in args]
    result = invoke("data", *args, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_demo_helpers_report_the_kept_model_and_compare_with_the_shipped(trained):
    from dlm import DiffusionLM
    from dlm.cli.demo import kept_and_last, side_by_side

    lm = DiffusionLM.load(trained, "cpu")
    assert kept_and_last(lm).startswith("kept: step ")
    rows = side_by_side(lm, ["hello", "how are you"])
    assert [r[0] for r in rows] == ["hello", "how are you"]
    assert all(isinstance(r[1], str) for r in rows)
    # each reply is the one its trace shows (one prompt per call), also when sampled
    shipped = DiffusionLM.load(device="cpu")
    assert [r[2] for r in rows] == [shipped.generate(p)[0] for p in ("hello", "how are you")]


def test_the_demo_fine_tunes_the_shipped_model_keeping_its_objective_padding_and_canvas(tmp_path):
    from dlm.cli.demo import DEMO_STEPS, demo_config, fine_tune_config
    from dlm.shipped import shipped_checkpoint

    base = shipped_checkpoint()
    shipped = json.loads((base / "config.json").read_text())["train"]
    cfg = fine_tune_config(tmp_path / "demo", base)
    assert cfg.init_from == str(base) and cfg.max_steps == DEMO_STEPS
    assert cfg.response_len == shipped["response_len"]
    assert cfg.length_head == shipped["length_head"]
    assert cfg.diffusion.padding == shipped["diffusion"]["padding"]
    assert (cfg.objective, cfg.block_size) == (shipped["objective"], shipped["block_size"])
    assert demo_config(tmp_path / "scratch").init_from is None  # no shipped model: scratch


@pytest.fixture(scope="module")
def trained_ar(tmp_path_factory):
    """The AR baseline on the same corpus and vocabulary (hence the same tokenizer)."""
    out = tmp_path_factory.mktemp("cli-ar") / "run"  # enough steps to write words
    result = invoke("train", "--out-dir", out, "--max-steps", 40, "--batch-size", 8,
                    "--eval-every", 0, "--save-every", 0, "--vocab-size", 512, "--device", "cpu",
                    "--objective", "ar")
    assert result.exit_code == 0, result.output
    return out


def test_speculative_generate_writes_the_verifiers_reply(trained, trained_ar, tmp_path):
    # eos padding: no rainbow pads, so the vocabulary (the tokenizer) is the AR run's
    drafter = tmp_path / "eos-padded"
    result = invoke("train", "--out-dir", drafter, "--max-steps", 3, "--batch-size", 8,
                    "--eval-every", 0, "--save-every", 0, "--vocab-size", 512, "--device",
                    "cpu", "--padding", "eos")
    assert result.exit_code == 0, result.output
    prompts = ["--prompt", "hello", "--prompt", "how are you", "--eos", "ban"]
    spec = invoke("generate", "--ckpt", drafter, "--verifier", trained_ar, *prompts,
                  "--decode", "speculative", "--draft-length", 3, "--length", 12)
    ar = invoke("generate", "--ckpt", trained_ar, *prompts, "--length", 12)
    assert spec.exit_code == 0 and ar.exit_code == 0, spec.output + ar.output
    assert spec.stdout == ar.stdout and len(ar.stdout.split()) > 10
    traced = invoke("generate", "--ckpt", drafter, "--verifier", trained_ar, "--prompt", "hi",
                    "--decode", "speculative", "--length", 8, "--trace")
    assert traced.exit_code == 0, traced.output
    missing = invoke("generate", "--ckpt", drafter, "--prompt", "hi", "--decode",
                     "speculative")
    assert missing.exit_code == 2 and "--verifier" in missing.output
    wrong = invoke("generate", "--ckpt", trained_ar, "--verifier", drafter, "--prompt", "hi")
    assert wrong.exit_code == 2 and "cannot draft" in wrong.output
    # a rainbow-padded drafter's tokenizer is the AR one plus its pads: accepted, and the
    # reply is still the verifier's (another tokenizer is refused: test_speculative.py)
    rainbow = invoke("generate", "--ckpt", trained, "--verifier", trained_ar, *prompts,
                     "--decode", "speculative", "--draft-length", 3, "--length", 12)
    assert rainbow.exit_code == 0, rainbow.output
    assert rainbow.stdout == ar.stdout
