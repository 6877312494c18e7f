"""Flags from config fields and their docstrings (`dlm.cli.fields`): one edit per setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
import typer
from typer.testing import CliRunner

from dlm.cli.fields import Flag, all_flags, apply_flags, field_docs, flags_of, with_flags
from dlm.config import DiffusionConfig, TrainConfig


@dataclass
class Inner:
    rate: float = 0.5
    """How often."""


@dataclass
class Settings:
    steps: int = 3
    """How many
    steps to take."""
    name: str | None = None
    """Who."""
    words: list[str] = field(default_factory=list)
    """Some words."""
    loud: bool = False
    """Shout."""
    table: dict = field(default_factory=dict)
    """Not a flag."""
    inner: Inner = field(default_factory=Inner)
    """Nested."""


def test_docstrings_are_read_and_only_flaggable_fields_become_flags():
    assert field_docs(Settings)["steps"] == "How many steps to take."
    names = [f.name for f in all_flags(Settings)]
    assert names == ["steps", "name", "words", "loud"]  # no dict, no sub-config
    with pytest.raises(TypeError, match="Settings.table"):
        flags_of(Settings, ["table"])


def test_a_command_takes_the_flags_and_receives_only_those_given():
    seen = {}
    app = typer.Typer()

    flags_ = [*all_flags(Settings), *all_flags(Inner, nested="inner")]

    @app.command()
    @with_flags(flags_)
    def run(config: str = "x", flags: dict | None = None):
        settings = Settings()
        apply_flags(settings, flags, flags_)
        seen.update(config=config, settings=settings, flags=flags)

    result = CliRunner().invoke(app, ["--steps", "7", "--words", "a", "--words", "b",
                                      "--loud", "--rate", "0.25", "--config", "y"])
    assert result.exit_code == 0, result.output
    s = seen["settings"]
    assert (s.steps, s.words, s.loud, s.inner.rate, s.name) == (7, ["a", "b"], True, 0.25, None)
    assert set(seen["flags"]) == {"steps", "words", "loud", "rate"}
    assert seen["config"] == "y"
    help_text = CliRunner().invoke(app, ["--help"]).output
    assert "How many steps to take." in help_text and "How often." in help_text


def test_every_sample_setting_is_a_flag_of_the_sampling_commands():
    from dlm.cli.app import SAMPLING_FLAGS
    from dlm.config import SampleConfig

    names = {f.name for f in SAMPLING_FLAGS}
    assert {f.name for f in dataclasses.fields(SampleConfig)} <= names
    assert {"trace", "trace_file"} <= names


def test_every_serve_setting_is_a_dlm_serve_flag_and_reaches_the_server(monkeypatch):
    """`dlm serve`'s options are ServeConfig's fields (none declared by hand, so none
    drifts: `--cors-origins`, `--shutdown-timeout-s`, `--max-cfg-scale`), with defaults."""
    import dlm.server
    from dlm.cli.app import SERVE_FLAGS, app
    from dlm.config import ServeConfig

    assert [f.name for f in SERVE_FLAGS] == [f.name for f in dataclasses.fields(ServeConfig)]
    assert all(f.help.endswith("]") and "default: " in f.help for f in SERVE_FLAGS)
    started = {}
    monkeypatch.setattr(dlm.server, "serve",
                        lambda ckpt, config, device, **kw: started.update(config=config))
    result = CliRunner().invoke(app, ["serve", "--port", "9001", "--max-cfg-scale", "2",
                                      "--cors-origins", "https://a", "--cors-origins",
                                      "https://b", "--shutdown-timeout-s", "1.5"])
    assert result.exit_code == 0, result.output
    assert started["config"] == dataclasses.replace(
        ServeConfig(), port=9001, max_cfg_scale=2.0, cors_origins=["https://a", "https://b"],
        shutdown_timeout_s=1.5)
    refused = CliRunner().invoke(app, ["serve", "--max-n", "0"])
    assert refused.exit_code == 2 and "max_n must be at least 1" in refused.stderr


def test_every_train_setting_is_a_dlm_train_flag_with_its_docstring():
    from dlm.cli.app import TRAIN_FLAGS

    by_name = {f.name: f for f in TRAIN_FLAGS}
    docs = field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("diffusion", "model_overrides"):  # a sub-config and a dict
            continue
        assert by_name[f.name] == Flag(f.name, (f.name,), by_name[f.name].type, docs[f.name])
    for f in dataclasses.fields(DiffusionConfig):
        assert by_name[f.name].path == ("diffusion", f.name)


def test_the_configs_names_match_the_implementations():
    # (that the configs import nothing above them is import-linter's layers contract)
    import dlm.config as config
    from dlm.diffusion import padding
    from dlm.sampling.rules import RULES

    assert tuple(RULES) == config.COMMIT_RULES
    assert all(f"`{mode}`" in padding.__doc__ for mode in config.PADDINGS)  # each explained


@pytest.mark.parametrize("command,cls", [("data", "DataConfig"), ("sweep", "SweepConfig"),
                                         ("bench", "BenchConfig"),
                                         ("distill", "DistillConfig")])
def test_every_setting_of_data_sweep_bench_and_distill_is_a_flag_with_its_docstring(
        command, cls):
    """A new setting of these commands is one edit: its field in `dlm.config`."""
    import dlm.config
    from dlm.cli.app import FLAGS

    config = getattr(dlm.config, cls)
    docs = field_docs(config)
    flags = {f.name: f for f in FLAGS[command]}
    names = [f.name for f in dataclasses.fields(config) if f.name != "mix"]  # a dict: --mix
    assert sorted(flags) == sorted(names)
    for name in names:
        assert flags[name].help.startswith(docs[name]), name
        assert flags[name].required or "[default: " in flags[name].help, name


def test_dlm_data_takes_its_documented_spellings_and_the_generated_ones(monkeypatch, tmp_path):
    """`--out` and `--split` (README's) and `--out-dir`, `--hub-split` (the fields') set the
    same DataConfig fields; every other flag is the field's own name."""
    import dlm.data.prepare
    from dlm.cli.app import app
    from dlm.config import DataConfig

    seen = []
    monkeypatch.setattr(dlm.data.prepare, "prepare", lambda cfg, say: seen.append(cfg))
    monkeypatch.setattr("dlm.cli.console.print_data_report", lambda result: None)
    for out, split in (("--out", "--split"), ("--out-dir", "--hub-split")):
        result = CliRunner().invoke(app, [
            "data", "a.tsv", "b=owner/name", out, str(tmp_path), split, "test", "--vocab-size",
            "300", "--mix", "a=1,b=3", "--no-lowercase", "--max-prompt-chars", "50"])
        assert result.exit_code == 0, result.output
    assert seen[0] == seen[1] == dataclasses.replace(
        DataConfig(), sources=["a.tsv", "b=owner/name"], out_dir=str(tmp_path),
        hub_split="test", vocab_size=300, mix={"a": 1.0, "b": 3.0}, max_prompt_chars=50)
    missing = CliRunner().invoke(app, ["data", "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "sources" in missing.output.lower()


def test_distills_required_settings_are_required_and_the_rest_reach_its_config(monkeypatch):
    import dlm.training.distill
    from dlm.cli.app import app
    from dlm.config import DistillConfig

    seen = []

    class Result:
        out_dir, seconds = "o", 0.0

    monkeypatch.setattr(dlm.training.distill, "run_distill",
                        lambda cfg, device, say: seen.append((cfg, device)) or Result())
    result = CliRunner().invoke(app, ["distill", "chats", "--teacher", "ar", "--out", "o",
                                      "--length", "64", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert seen == [(DistillConfig("chats", "ar", "o", length=64), "cpu")]
    missing = CliRunner().invoke(app, ["distill", "chats", "--out", "o"])
    assert missing.exit_code == 2 and "--teacher" in missing.output


def test_repeated_options_of_numbers_are_lists():
    from dlm.cli.fields import flag_type

    assert flag_type(list[int]) == list[int] and flag_type(list[float]) == list[float]
    assert flag_type(list[bool]) is None and flag_type(dict[str, float]) is None
