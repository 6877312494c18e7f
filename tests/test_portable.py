"""Results that travel: no committed text file names a folder of the machine that wrote
it (its checkout, the work folder holding it, home or temporary folder), and
`dlm.util.portable` rewrites such paths."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from dlm.util.portable import REPOSITORY, portable


def test_machine_paths_are_rewritten_and_others_kept():
    home, tmp = Path.home(), Path(tempfile.gettempdir())
    assert (REPOSITORY / "pyproject.toml").is_file()  # the checkout, not its src/ folder
    work = REPOSITORY.parent  # the folder the checkout lies in: `..` (../shared, a peer)
    assert portable(f"--peer {work}/peer --text {work}/shared/data/a.txt") == \
        "--peer ../peer --text ../shared/data/a.txt"
    if work not in (home, tmp):  # else that folder is written `..`, rightly
        text = (f"dlm bench --ckpt {tmp}/cache/demo --config {REPOSITORY}/benchmarks/a.json "
                f"from {home}/.cache/dlm in {REPOSITORY}")
        assert portable(text) == ("dlm bench --ckpt <tmp>/cache/demo --config "
                                  "benchmarks/a.json from ~/.cache/dlm in .")
    # a folder's name continued is another folder (the checkout itself may lie in the
    # temp folder, as in a fresh clone there: then it is written as <tmp>/..., rightly)
    kept = f"{tmp}foo runs/chat ../shared/data /srv/data"
    assert portable(kept) == kept


def committed_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY, check=True,
                                capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of committed files to check")
    return [REPOSITORY / name for name in listed if name]


def test_no_committed_text_file_names_a_folder_of_this_machine():
    offenders = []
    for path in committed_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):  # weights, images: not text
            continue
        if portable(text) != text:
            lines = [n for n, (a, b) in enumerate(zip(text.splitlines(),
                                                      portable(text).splitlines(),
                                                      strict=True), 1) if a != b]
            offenders.append(f"{path.relative_to(REPOSITORY)}:{lines[0]}")
    assert not offenders, ("committed files name this machine's folders (write paths "
                           f"relative to the repository, dlm.util.portable): {offenders}")
