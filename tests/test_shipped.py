"""The shipped chat model: exported from a run, the default of the chat commands."""

import json

import pytest

from dlm import DiffusionLM
from dlm.errors import CheckpointError
from dlm.shipped import SHIPPED_DIR, export, shipped_checkpoint
from dlm.training.train import train
from tests.conftest import tiny_train_config


def test_export_writes_the_kept_weights_and_the_card(tmp_path, pairs_tsv):
    run = train(tiny_train_config(tmp_path / "run", pairs_tsv, max_steps=4, eval_every=2))
    card = tmp_path / "card.md"
    card.write_text("# a card\n")
    out = export(run.out_dir, card, tmp_path / "shipped")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors", "tokenizer.json"]
    best = json.loads((run.out_dir / "best" / "config.json").read_text())
    assert json.loads((out / "config.json").read_text())["step"] == best["step"]
    assert isinstance(DiffusionLM.load(out, "cpu").generate("hello")[0], str)


def test_the_shipped_model_loads_and_answers():
    if not (SHIPPED_DIR / "config.json").is_file():
        pytest.fail(f"{SHIPPED_DIR} is missing: the shipped model is part of the repository")
    lm = DiffusionLM.load(shipped_checkpoint(), "cpu")
    size = sum(p.stat().st_size for p in SHIPPED_DIR.iterdir())
    assert size <= 40 * 2**20
    card = (SHIPPED_DIR / "README.md").read_text()
    assert "DailyDialog" in card and "CC BY-NC-SA 4.0" in card
    from dlm.defaults import chat_decoding

    reply = lm.generate("hello", chat_decoding(lm))[0]
    assert reply.strip(), "the shipped model answered a greeting with nothing"


def test_a_missing_shipped_model_is_a_clear_error(monkeypatch, tmp_path):
    import dlm.shipped

    monkeypatch.setattr(dlm.shipped, "SHIPPED_DIR", tmp_path / "none")
    with pytest.raises(CheckpointError, match="no shipped chat model"):
        dlm.shipped.shipped_checkpoint()


def test_load_and_from_pretrained_without_a_path_give_the_shipped_model(tmp_path):
    """As every command does without --ckpt; a path still loads that path."""
    assert DiffusionLM.load(device="cpu").source == SHIPPED_DIR
    lm = DiffusionLM.from_pretrained(device="cpu")
    assert lm.source == SHIPPED_DIR
    lm.save_pretrained(tmp_path / "copy")
    assert DiffusionLM.from_pretrained(tmp_path / "copy", device="cpu").source == \
        tmp_path / "copy"


def test_the_python_api_answers_as_dlm_generate_does():
    """No config: the measured defaults (`dlm.defaults.chat_decoding`) that every command
    starts from, so a script and the command line give the same greedy replies."""
    from typer.testing import CliRunner

    from dlm.cli.app import app

    prompts = ["hello", "how are you", "i am sad"]
    replies = DiffusionLM.load(device="cpu").generate(prompts)
    args = [a for p in prompts for a in ("--prompt", p)]
    result = CliRunner().invoke(app, ["generate", *args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    def words(text: str) -> str:  # the console wraps long replies at its width
        return " ".join(text.split())

    expected = " ".join(f"> {p} {r}" for p, r in zip(prompts, replies, strict=True))
    assert words(result.stdout) == words(expected), (result.stdout, replies)


def test_infill_through_the_api_and_the_cli_agree():
    from typer.testing import CliRunner

    from dlm.cli.app import app

    template = "The weather is [MASK] today, so [MASK*5] umbrella."
    text = DiffusionLM.load(device="cpu", fill=True).infill(template).text
    result = CliRunner().invoke(app, ["infill", template, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert " ".join(result.stdout.split()) == " ".join(text.split())


def test_the_server_answers_as_the_python_api_at_the_same_length():
    """The server sizes a fixed canvas (`max_tokens`, else the model's default length)
    and otherwise starts from the same measured defaults (`lm.decoding()`)."""
    from fastapi.testclient import TestClient

    from dlm.config import ServeConfig
    from dlm.server import create_app

    lm = DiffusionLM.load(device="cpu")
    with TestClient(create_app(lm, ServeConfig())) as client:
        for prompt in ["hello", "how are you", "i am sad"]:
            answer = client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 24})
            assert answer.status_code == 200, answer.text
            served = answer.json()["choices"][0]["message"]["content"]
            assert served == lm.generate(prompt, lm.decoding(length=24))[0]


PROMPTS = ["hello", "how are you", "i am sad"]


def test_every_door_gives_the_same_reply_with_nothing_set_but_the_prompt_and_seed():
    """One policy for every door (`lm.decoding()`): the Python API, `dlm generate` and the
    server (chat and text completions) reply alike to a prompt and a seed, all else left
    to the defaults; with no seed either, the API and the server still agree."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from dlm.cli.app import app
    from dlm.config import ServeConfig
    from dlm.server import create_app

    lm = DiffusionLM.load(device="cpu")
    with TestClient(create_app(lm, ServeConfig())) as client:
        for prompt in PROMPTS:
            api = lm.generate(prompt, lm.decoding(seed=0))[0]
            assert api.strip(), prompt
            cli = CliRunner().invoke(app, ["generate", "--prompt", prompt, "--seed", "0",
                                           "--device", "cpu"])
            assert cli.exit_code == 0, cli.output
            # the console wraps a long reply at its width: compare the words
            assert cli.stdout.split() == f"> {prompt} {api}".split(), (cli.stdout, api)
            chat = client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": prompt}], "seed": 0})
            text = client.post("/v1/completions", json={"prompt": prompt, "seed": 0})
            assert chat.status_code == text.status_code == 200, chat.text + text.text
            assert chat.json()["choices"][0]["message"]["content"] == api
            assert text.json()["choices"][0]["text"] == api
            unseeded = client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": prompt}]})
            assert unseeded.json()["choices"][0]["message"]["content"] == \
                lm.generate(prompt)[0]


def test_the_page_the_help_and_the_schema_show_the_resolvers_defaults():
    """GET /defaults (what the page shows), `--help` of the sampling commands and the
    OpenAPI schema's defaults all equal `lm.decoding()` of the (shipped) served model,
    not None: the flags and request fields default to None only to mean 'not given'."""
    import re
    from dataclasses import asdict

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from dlm.cli.app import app
    from dlm.config import SampleConfig, ServeConfig
    from dlm.server import create_app
    from dlm.server.sample_fields import SERVED, request_name

    lm = DiffusionLM.load(device="cpu")
    resolved = lm.decoding()
    assert resolved.repetition_penalty != SampleConfig.repetition_penalty  # tells them apart
    expected = {request_name(f): getattr(resolved, f) for f in SERVED}
    expected["max_tokens"] = resolved.length
    with TestClient(create_app(lm, ServeConfig())) as client:
        page = client.get("/defaults").json()["settings"]
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert page == expected
    for name in ("ChatRequest", "CompletionRequest", "DenoiseRequest"):
        properties = schemas[name]["properties"]
        assert {k: properties[k].get("default") for k in expected} == expected, name

    def shown(value):
        return "none" if value is None else str(value)

    for command in ("generate", "chat", "infill", "edit"):
        # wide enough that every option is one row of the table
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "3000"})
        assert result.exit_code == 0, result.output
        rows = {}
        for line in result.stdout.splitlines():
            flag = re.match(r"^│\s+(?:\*\s+)?(--[a-z-]+)", line)
            default = re.search(r"\[default: ([^\]]*)\]\s*│$", line)
            if flag and default:
                rows[flag.group(1)] = default.group(1)
        own = (DiffusionLM.load(device="cpu", fill=True).decoding()
               if command in ("infill", "edit") else resolved)  # the shipped fill model's
        fields = {"--" + k.replace("_", "-"): shown(v) for k, v in asdict(own).items()}
        assert {flag: rows.get(flag) for flag in fields} == fields, command


def test_the_fill_model_is_shipped_beside_the_chat_model():
    """The chat model writes left to right in blocks (dual), so infill and edit default to
    the shipped masked-diffusion model; asking the chat model to fill names that one."""
    from dlm.errors import ConfigError
    from dlm.shipped import FILL_DIR

    fill = DiffusionLM.load(device="cpu", fill=True)
    assert fill.source == FILL_DIR and fill.objective.can_fill
    assert "CC BY-NC-SA 4.0" in (FILL_DIR / "README.md").read_text()
    assert "[MASK]" not in fill.infill("I am [MASK*3] today.").text
    chat = DiffusionLM.load(device="cpu")
    assert chat.source == SHIPPED_DIR
    if not chat.objective.can_fill:
        with pytest.raises(ConfigError, match=r"load\(fill=True\)"):
            chat.infill("I am [MASK*3] today.")
