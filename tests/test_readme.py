"""The README's two set-up commands stay true: CI runs the README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

from trtq.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(b.strip() for b in _bash_blocks() if "pytest" in b)
    assert test_cmd in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_main_command_is_trtq_run_on_defaults():
    main_cmd = next(b.strip() for b in _bash_blocks() if "trtq run" in b)
    assert main_cmd.endswith("trtq run") and "pip install -e ." in main_cmd


def test_readme_commands_parse():
    """Every `trtq ...` line in the README's command examples is accepted by the parser."""
    parser = build_parser()
    parsed = 0
    for block in _bash_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith(("trtq ", ".venv/bin/trtq ")):
                parser.parse_args(line.split()[1:])
                parsed += 1
    assert parsed >= 5
