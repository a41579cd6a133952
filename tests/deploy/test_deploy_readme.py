"""docs/deploy.md's `trtq deploy --dry-run` listing is what trtq prints today.

The page shows the listing for the measured LiteMedSAM `trtq run` folder; here the same
command runs on a tiny model laid out under the same relative paths, so every line must match
except the disk estimate, which depends on the models' sizes.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from trtq.cli import main

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def _readme_listing() -> list[str]:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    section = text[text.index("# Deploy to a Jetson"):]
    block = re.search(r"```text\n(.*?)```", section, flags=re.S).group(1)
    return block.rstrip("\n").splitlines()


def _readme_command() -> list[str]:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    section = text[text.index("# Deploy to a Jetson"):]
    line = next(ln for ln in section.splitlines() if ln.startswith("trtq deploy")
                and "--dry-run" in ln)
    extra = re.search(r"with `(--jetpack 6\.2 --module \"[^\"]+\")`",
                      section.replace("\n", " ")).group(1)
    return shlex.split(line)[1:] + shlex.split(extra)


def test_readme_dry_run_listing_is_current(tiny_run_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_run_folder, tmp_path / "runs" / "litemedsam")
    argv = _readme_command()
    assert argv[:2] == ["deploy", "--host"] and "--jetpack" in argv
    assert main(argv) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    expected = _readme_listing()
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected, strict=True):
        if "the deploy needs about" in want:
            assert "the deploy needs about" in got
            continue
        assert got == want
