"""Every door of dlm given text that is not valid Unicode (an unpaired surrogate), and
text that is valid but unusual: what each answers (HTTP status and body, or the CLI's
last stderr line, or the Python exception).

    python benchmarks/hardening/doors.py > benchmarks/hardening/doors-after.md

Runs on the shipped chat model, in one process (the CLI through subprocesses, so argv
with invalid UTF-8 bytes is what the OS passes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient

from dlm.config import ServeConfig
from dlm.pipeline import DiffusionLM
from dlm.server import create_app
from dlm.shipped import shipped_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cell(text: str) -> str:
    return short(text).replace("|", "\\|").encode("utf-8", "backslashreplace").decode()


def http_cases(client: TestClient) -> list[tuple[str, str]]:
    chat = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "steps": 8}
    bodies = {
        "POST /v1/chat/completions content=\\ud800":
            ("/v1/chat/completions", '{"messages":[{"role":"user","content":"\\ud800"}]}'),
        "POST /v1/completions prompt=\\udfff":
            ("/v1/completions", '{"prompt":"\\udfff"}'),
        "POST /v1/completions prompt=[ok, \\ud83d]":
            ("/v1/completions", '{"prompt":["hello","\\ud83d"],"max_tokens":4}'),
        "POST /v1/chat/completions stop=\\udc00":
            ("/v1/chat/completions", json.dumps({**chat, "stop": "\udc00"})),
        "POST /v1/chat/completions name=\\ud800":
            ("/v1/chat/completions", json.dumps({**chat, "messages": [
                {"role": "user", "content": "hi", "name": "\ud800"}]})),
        "POST /v1/chat/completions user=\\ud800":
            ("/v1/chat/completions", json.dumps({**chat, "user": "\ud800"})),
        "POST /v1/chat/completions key \\ud800":
            ("/v1/chat/completions", json.dumps({**chat, "\ud800": 1})),
        "POST /v1/denoise template=\\ud800":
            ("/v1/denoise", '{"template":"a [MASK] \\ud800"}'),
        "POST /v1/denoise text+span=\\udfff":
            ("/v1/denoise", '{"text":"I am happy","span":"\\udfff"}'),
        "POST /v1/chat/completions content=NUL, BOM, U+10FFFF, e+U+0301":
            ("/v1/chat/completions", json.dumps({**chat, "messages": [
                {"role": "user", "content": "a\x00b\x07\ufeffc \U0010ffff e\u0301 \ufb01"}]})),
    }
    rows = []
    for label, (route, body) in bodies.items():
        r = client.post(route, content=body.encode(), headers={"content-type":
                                                               "application/json"})
        rows.append((label, f"{r.status_code} {r.text}"))
    return rows


def api_cases(lm: DiffusionLM) -> list[tuple[str, str]]:
    from dlm.config import SampleConfig

    config = SampleConfig(length=8, steps=8)
    calls = {
        'lm.generate("hi \\ud800")': lambda: lm.generate("hi \ud800", config),
        'lm.reply([{"content": "\\udfff"}])':
            lambda: lm.reply([{"role": "user", "content": "\udfff"}], config),
        'lm.infill("a [MASK] \\ud800")': lambda: lm.infill("a [MASK] \ud800", config=config),
        'lm.edit("I am happy", span="\\ud800")':
            lambda: lm.edit("I am happy", span="\ud800", config=config),
        'lm.generate("a\\x00b \\ufeff \\U0010ffff e\\u0301")':
            lambda: lm.generate("a\x00b \ufeff \U0010ffff e\u0301", config),
    }
    rows = []
    for label, call in calls.items():
        try:
            rows.append((label, f"ok: {call()!r}"))
        except Exception as exc:  # what the caller sees is the point
            rows.append((label, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"))
    return rows


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The exit code, the last stderr line, and what stdout says of skipped rows."""
    lines = proc.stderr.decode("utf-8", "backslashreplace").strip().splitlines()
    skipped = [line.strip() for line in proc.stdout.decode("utf-8", "backslashreplace")
               .splitlines() if "skipped" in line]
    return f"exit {proc.returncode}: {lines[-1] if lines else ''}" + (
        " (traceback)" if "Traceback" in proc.stderr.decode("utf-8", "replace") else "") + (
        f" stdout: {' / '.join(skipped)}" if skipped else "")


def cli_cases(folder: Path) -> list[tuple[str, str]]:
    good = [json.dumps({"prompt": f"hello number {i}", "response": f"hi {i}"})
            for i in range(40)]
    jsonl = folder / "a.jsonl"
    jsonl.write_text("\n".join(good[:20] + ['{"prompt": "hi \\ud800 there", "response": '
                                            '"ok"}'] + good[20:]) + "\n")
    tsv = folder / "b.tsv"
    tsv.write_bytes(b"\n".join([f"hello {i}\thi {i}".encode() for i in range(20)]
                              + [b"hi \xed\xa0\x80 there\tok"]) + b"\n")
    latin = folder / "c.tsv"
    latin.write_bytes("caf\xe9\tna\xefve\n".encode("latin-1") * 20)
    env = {**os.environ, "PYTHONUTF8": "0", "COLUMNS": "300"}
    dlm = [sys.executable, "-m", "dlm"]
    commands = {
        "dlm data a.jsonl (row 21: prompt \"hi \\ud800 there\")":
            [*dlm, "data", str(jsonl), "--out", str(folder / "d1"), "--vocab-size", "300"],
        "dlm train --data a.jsonl --dry-run":
            [*dlm, "train", "--data", str(jsonl), "--dry-run", "--out-dir",
             str(folder / "run"), "--vocab-size", "300"],
        "dlm data b.tsv (line 21: bytes ED A0 80)":
            [*dlm, "data", str(tsv), "--out", str(folder / "d2"), "--vocab-size", "300"],
        "dlm data c.tsv (Latin-1 file)":
            [*dlm, "data", str(latin), "--out", str(folder / "d3"), "--vocab-size", "300"],
        "dlm generate --prompt <bytes ED A0 80>":
            [*dlm, "generate", "--prompt", os.fsdecode(b"hi \xed\xa0\x80"), "--length", "8"],
        "dlm infill <bytes FF> (template)":
            [*dlm, "infill", os.fsdecode(b"a [MASK] \xff"), "--length", "8"],
    }
    rows = []
    for label, argv in commands.items():
        proc = subprocess.run([os.fsencode(a) for a in argv], capture_output=True, env=env,
                              cwd=folder, timeout=600)
        rows.append((label, last_line(proc).replace(str(folder), "<tmp>")))
    return rows


def main() -> None:
    lm = DiffusionLM.load(shipped_checkpoint(), "cpu")
    rows: list[tuple[str, str, str]] = []
    with TestClient(create_app(lm, ServeConfig()), raise_server_exceptions=False) as client:
        rows += [("HTTP", *r) for r in http_cases(client)]
    rows += [("Python", *r) for r in api_cases(lm)]
    with tempfile.TemporaryDirectory() as tmp:
        rows += [("CLI", *r) for r in cli_cases(Path(tmp))]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    print(f"Commit {commit}; `python benchmarks/hardening/doors.py`.\n")
    print("| door | input | answer |\n|---|---|---|")
    for door, label, answer in rows:
        print(f"| {door} | {cell(label)} | {cell(answer)} |")


if __name__ == "__main__":
    main()
