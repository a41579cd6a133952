"""The README's two set-up commands stay true: CI runs the README's test command verbatim.
(Its `trtq ...` lines, like those of docs/, are parsed in tests/test_docs.py.)"""

from __future__ import annotations

import re
from pathlib import Path

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
