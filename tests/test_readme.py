"""What the README, the docs pages and the benchmark pages name must exist in the
repository: the configs they pass, the commands and flags they show, the Python they
import and call, and the files their links point to. The README stays short."""

import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
BENCHMARKS = sorted((ROOT / "benchmarks").rglob("*.md"))
PAGES = [README, *DOCS, *BENCHMARKS]
README_MAX_LINES = 300

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)
SHELL = ("", "bash", "sh", "shell", "console")


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in languages]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def test_the_pages_are_there():
    assert README.is_file()
    assert DOCS, "no docs/*.md pages: the README's long sections live there"


def test_the_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move figures and long "
        "sections to a page under docs/ and link it")


def test_every_config_a_page_names_is_committed():
    missing = []
    for page in PAGES:
        for path in re.findall(r"--config[ =]+([\w./-]+\.json)", page.read_text()):
            if path.startswith("benchmarks/") or path.startswith("recipes/"):
                if not (ROOT / path).is_file():
                    missing.append(f"{name(page)}: {path}")
    assert not missing, missing


# ---- commands and flags
def dlm_commands() -> dict[str, set[str]]:
    """Every `dlm` command with the options it accepts, from the Typer app behind the
    installed `dlm` script (pyproject.toml's [project.scripts])."""
    from importlib.metadata import entry_points

    import typer

    (script,) = entry_points(group="console_scripts", name="dlm")
    group = typer.main.get_command(importlib.import_module(script.module).app)
    return {cmd: {opt for param in command.params
                  for opt in (*param.opts, *param.secondary_opts)}
            for cmd, command in group.commands.items()}


def dlm_invocations(text: str) -> list[str]:
    """`dlm CMD ...` as a page shows it: lines of shell blocks (continuations joined,
    comments cut) and inline code spans in the prose."""
    found = []
    for body in blocks(text, SHELL):
        for line in body.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#\s|\s#$", line)[0]
            m = re.search(r"(?:^\s*|\$ |-m |&& )dlm ([a-z][\w-]*.*)", line)
            if m:
                found.append(m.group(1))
    for span in re.findall(r"`([^`]+)`", prose(text)):
        m = re.search(r"(?:^|-m )dlm ([a-z][\w-]*.*)", span, re.S)
        if m:
            found.append(m.group(1))
    return found


def unknown_invocations(text: str, commands: dict[str, set[str]]) -> list[str]:
    bad = []
    for call in dlm_invocations(text):
        cmd, _, rest = call.partition(" ")
        if cmd not in commands:
            bad.append(f"dlm {cmd}: no such command")
            continue
        for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
            if flag not in commands[cmd]:
                bad.append(f"dlm {cmd} {flag}: no such flag")
    return bad


def test_the_command_check_catches_what_it_should():
    commands = {"train": {"--data"}}
    page = "```bash\ndlm train --data x --nope 1   # --fine in a comment\ndlm fly\n```\n`dlm trian`"
    assert unknown_invocations(page, commands) == [
        "dlm train --nope: no such flag", "dlm fly: no such command",
        "dlm trian: no such command"]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_command_and_flag_a_page_shows_is_real(page):
    bad = unknown_invocations(page.read_text(), dlm_commands())
    assert not bad, f"{name(page)}: {bad}"


def test_the_readme_shows_every_command():
    shown = {call.partition(" ")[0] for call in dlm_invocations(README.read_text())}
    missing = sorted(set(dlm_commands()) - shown)
    assert not missing, f"README.md does not show: {missing}"


# ---- Python examples
def python_problems(code: str) -> list[str]:
    """Names imported from dlm that do not exist, keywords a dlm dataclass does not have,
    and attributes used on a DiffusionLM that it does not have."""
    from dlm import DiffusionLM

    tree = ast.parse(code)
    problems, imported, models = [], {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dlm":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    problems.append(f"from {node.module} import {alias.name}: not there")
                else:
                    imported[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):  # lm = DiffusionLM.load(...), .from_pretrained(...), ...
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and isinstance(node.value.func.value, ast.Name)
                and (node.value.func.value.id == "DiffusionLM" or node.value.func.value.id
                     in models)):
            models.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "DiffusionLM" or node.value.id in models:
                if not hasattr(DiffusionLM, node.attr):
                    problems.append(f"{node.value.id}.{node.attr}: DiffusionLM has no {node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            target = imported.get(node.func.id)
            if dataclasses.is_dataclass(target):
                fields = {f.name for f in dataclasses.fields(target)}
                problems += [f"{node.func.id}({k.arg}=...): no such field"
                             for k in node.keywords if k.arg and k.arg not in fields]
    return problems


def test_the_python_check_catches_what_it_should():
    code = ("from dlm import DiffusionLM, SampleConfig, Nope\n"
            "lm = DiffusionLM.load()\nlm.generate('hi', SampleConfig(stepz=3))\nlm.fly()\n")
    assert sorted(python_problems(code)) == sorted([
        "from dlm import Nope: not there", "SampleConfig(stepz=...): no such field",
        "lm.fly: DiffusionLM has no fly"])


@pytest.mark.parametrize("page", [README, *DOCS], ids=name)
def test_the_python_a_page_shows_parses_and_names_what_exists(page):
    problems = []
    for code in blocks(page.read_text(), ("python",)):
        try:
            problems += python_problems(code)
        except SyntaxError as e:
            problems.append(f"does not parse: {e}")
    assert not problems, f"{name(page)}: {problems}"


# ---- links
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links and images of a page that point into the repository
    (not a URL, not an anchor on the same page), anchors dropped."""
    text = re.sub(r"`[^`]*`", "", prose(text))  # code is not a link
    targets = LINK.findall(text) + REFERENCE.findall(text)
    return [t.split("#")[0] for t in targets
            if not re.match(r"[A-Za-z][\w+.-]*:", t) and not t.startswith("#")]


def broken_links(page: Path) -> list[str]:
    return [t for t in relative_links(page.read_text()) if not (page.parent / t).exists()]


def test_the_link_check_catches_what_it_should(tmp_path):
    (tmp_path / "there.md").write_text("")
    (tmp_path / "folder").mkdir()
    page = tmp_path / "page.md"
    page.write_text("[a](there.md#part) [b](missing.md) ![c](folder/) [d](https://x.org/y) "
                    "[e](#here) `[f](not-a-link.md)`\n\n```\n[g](code.md)\n```\n"
                    "[h]: gone/file.txt\n")
    assert broken_links(page) == ["missing.md", "gone/file.txt"]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_of_a_page_points_at_a_file_that_exists(page):
    broken = broken_links(page)
    assert not broken, f"{name(page)} links to what is not in the repository: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t).resolve() for t in relative_links(README.read_text())}
    unlinked = [name(p) for p in DOCS if p.resolve() not in linked]
    assert not unlinked, f"README.md links none of: {unlinked}"


def test_the_gitignore_keeps_benchmark_run_records():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "runs/" not in ignored  # that pattern also swallowed benchmarks/runs/
