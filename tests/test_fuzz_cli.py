"""The CLI's arguments under generated text (hypothesis): text that is not valid Unicode
(argv bytes that are not UTF-8 reach Python as unpaired surrogates) is exit code 2 and
one `error:` line naming the option or argument; valid text, however odd (NUL, control
characters, BOMs, the largest code points, strings normalisation would change), is
never a traceback."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlm.checkpoint import save_checkpoint
from dlm.cli.app import app
from dlm.model import Transformer
from tests.conftest import tiny_config
from tests.strategies import door_text, is_unicode

runner = CliRunner()
CLI_SEEN: collections.Counter = collections.Counter()  # (command, valid?, exit code) -> n


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fuzz-cli") / "ckpt"
    save_checkpoint(path, Transformer(tiny_config(tok.vocab_size)), tok,
                    {"train": {"prompt_len": 16, "response_len": 8}})
    return path


# (command line with TEXT where the generated text goes, the name the error must give)
COMMANDS = [
    (["generate", "--prompt", "TEXT"], "--prompt"),
    (["generate", "--prompt", "hello", "--require", "TEXT"], "--require"),
    (["generate", "--prompt", "hello", "--rule", "TEXT"], "--rule"),
    (["infill", "TEXT"], "TEXT"),
    (["infill", "a [MASK] day", "--prompt", "TEXT"], "--prompt"),
    (["edit", "--text", "TEXT", "--span", "happy"], "--text"),
    (["edit", "--text", "TEXT", "--span", "0:1"], "--text"),
    (["edit", "--text", "I am happy", "--span", "TEXT"], "--span"),
]


def test_cli_arguments_of_any_text(ckpt, request):
    @given(command=st.sampled_from(COMMANDS), text=door_text(24))
    @settings(max_examples=request.config.getoption("--fuzz-examples") * 5, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    def run(command, text):
        one_command(ckpt, command, text)

    run()


def one_command(ckpt, command, text):
    argv, name = command
    args = [text if a == "TEXT" else a for a in argv]
    result = runner.invoke(app, [*args, "--ckpt", str(ckpt), "--length", "4", "--steps", "4",
                                 "--device", "cpu"])
    CLI_SEEN[(argv[0], is_unicode(text), result.exit_code)] += 1
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, result.output)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2), (args, result.output)
    if not is_unicode(text):
        assert result.exit_code == 2
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {name}"), result.stderr
        assert "not valid Unicode" in errors[0]
        result.stderr.encode("utf-8")  # the refused text is quoted with escapes


def test_the_cli_fuzz_sent_both_kinds(request):
    """Both kinds of text were sent; `--fuzz-report FILE` writes the counts per command
    (FILE with `-cli` before its suffix)."""
    if not CLI_SEEN:
        pytest.skip("the fuzz test above was deselected")
    valid = sum(n for (_, ok, _), n in CLI_SEEN.items() if ok)
    invalid = sum(n for (_, ok, _), n in CLI_SEEN.items() if not ok)
    assert valid and invalid, CLI_SEEN
    out = request.config.getoption("--fuzz-report")
    if out:
        per_command: dict = collections.defaultdict(collections.Counter)
        for (command, ok, code), n in CLI_SEEN.items():
            per_command[command]["runs"] += n
            per_command[command]["invalid_text"] += 0 if ok else n
            per_command[command][f"exit {code}"] += n
        target = Path(out)
        target.with_name(f"{target.stem}-cli{target.suffix}").write_text(
            json.dumps(per_command, indent=1, sort_keys=True))


def test_chat_skips_a_line_of_input_that_is_not_utf8(ckpt):
    """`dlm chat` reads bytes from a terminal or a pipe: a line that is not UTF-8 is
    refused in one line and the chat goes on (it ended with a traceback before)."""
    import subprocess
    import sys

    lines = b"hi \xed\xa0\x80 there\nhello \x00 e\xcc\x81\n/quit\n"
    done = subprocess.run([sys.executable, "-m", "dlm", "chat", "--ckpt", str(ckpt),
                           "--length", "4", "--steps", "4", "--device", "cpu"],
                          input=lines, capture_output=True, timeout=120)
    out = done.stdout.decode("utf-8")  # strict: what it prints is UTF-8
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    assert "not valid Unicode text" in out and "the line is ignored" in out
    assert out.count("dlm>") == 1  # the valid line was answered


def test_a_trace_file_of_odd_valid_text_is_utf8_json_lines(ckpt, tmp_path):
    trace = tmp_path / "trace.jsonl"
    prompt = "hi \x00 \ufeff \U0010ffff e\u0301 \u212b"
    result = runner.invoke(app, ["generate", "--prompt", prompt, "--ckpt", str(ckpt),
                                 "--length", "4", "--steps", "4", "--device", "cpu",
                                 "--trace-file", str(trace)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in trace.read_bytes().decode("utf-8").splitlines()]
    assert len(rows) == 5 and rows[-1]["committed"] >= 1  # every step, as UTF-8 JSON


def test_files_given_to_the_cli_drop_a_leading_bom_and_refuse_other_encodings(ckpt, tmp_path):
    """A config or template file with a BOM at its start is read; one that is not UTF-8,
    or whose JSON escapes an unpaired surrogate, is one line naming the file."""
    config = tmp_path / "run.json"
    config.write_bytes(b'\xef\xbb\xbf{"max_steps": 1}')
    from dlm.config import load_train_config

    assert load_train_config(config).max_steps == 1
    config.write_bytes(b'{"val_prompts": ["hi \\ud800"]}')
    result = runner.invoke(app, ["train", "--config", str(config), "--dry-run"])
    assert result.exit_code == 2 and "val_prompts[0]: not valid Unicode" in result.stderr
    template = tmp_path / "t.txt"
    template.write_bytes("\ufeffa [MASK] day".encode())
    result = runner.invoke(app, ["infill", "--template", str(template), "--ckpt", str(ckpt),
                                 "--length", "4", "--steps", "4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    template.write_bytes(b"a [MASK] caf\xe9")
    result = runner.invoke(app, ["infill", "--template", str(template), "--ckpt", str(ckpt)])
    assert result.exit_code == 2 and "not UTF-8 text" in result.stderr
    assert str(template) in result.stderr
