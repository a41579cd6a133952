"""experiments/: the provenance block every script writes, the shell script's gathering step,
and that every script starts (imports resolve after the move from bench/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
SCRIPTS = sorted(p.name for p in EXPERIMENTS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture
def prov(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import _provenance

    return _provenance


def _git_head() -> str | None:
    if shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def test_provenance_block(prov):
    block = prov.provenance(["experiments/x.py", "--out", "a b.json"])
    assert block["command"].endswith("experiments/x.py --out 'a b.json'")
    assert block["argv"] == ["experiments/x.py", "--out", "a b.json"]
    assert prov.missing_keys(block) == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", block["date_utc"])
    machine = block["machine"]
    assert machine["cores"] == os.cpu_count() and machine["python"] == sys.version.split()[0]
    assert machine["packages"]["torch"].startswith(__import__("torch").__version__.split("+")[0])
    head = _git_head()
    if head is None:
        assert block["commit"] is None
    else:
        assert block["commit"] == head and isinstance(block["dirty"], bool)


def test_shell_command_is_kept_as_typed(prov):
    block = prov.provenance(command="experiments/w8a8_accuracy.sh out percentile")
    assert block["command"] == "experiments/w8a8_accuracy.sh out percentile"
    assert block["argv"] == ["experiments/w8a8_accuracy.sh", "out", "percentile"]


def test_missing_keys(prov):
    assert prov.missing_keys(None) == ["command", "commit", "date_utc", "machine"]
    assert prov.missing_keys({"command": "x", "commit": "", "date_utc": "d", "machine": {}}) \
        == ["commit", "machine"]


def test_save_results_puts_provenance_first(prov, tmp_path):
    out = tmp_path / "sub" / "r.json"
    prov.save_results(out, {"rows": [1, 2]}, {"command": "c"})
    assert list(json.loads(out.read_text())) == ["provenance", "rows"]
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temp file left


def test_cli_gathers_results(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"miou": 0.5, "per_instance": [1, 2, 3]}))
    b.write_text(json.dumps({"miou": 0.7}))
    out = tmp_path / "all.json"
    subprocess.run([sys.executable, str(EXPERIMENTS / "_provenance.py"), "--command",
                    "experiments/some.sh x", "--out", str(out), "--keep", "miou", "--",
                    f"first={a}", f"second={b}"], check=True, cwd=REPO,
                   env=os.environ | {"PYTHONPATH": str(REPO)})
    data = json.loads(out.read_text())
    assert data["runs"] == {"first": {"miou": 0.5}, "second": {"miou": 0.7}}
    assert data["provenance"]["command"] == "experiments/some.sh x"


STAND_IN_TRTQ = """#!/bin/sh
# stand-in for trtq: `calibrate` (has --observer) makes the folder, `eval` writes a result
out=""; obs=""
while [ $# -gt 0 ]; do
  case "$1" in --out) out=$2; shift;; --observer) obs=$2; shift;; esac; shift
done
if [ -n "$obs" ]; then mkdir -p "$out" && echo x > "$out/quant_state.pt"; exit 0; fi
echo '{"miou": 0.8, "instances": 3, "per_instance": [1, 2, 3]}' > "$out"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_w8a8_script_writes_a_results_file_with_provenance(tmp_path):
    trtq = tmp_path / "trtq"
    trtq.write_text(STAND_IN_TRTQ)
    trtq.chmod(0o755)
    out = tmp_path / "out"
    env = os.environ | {"TRTQ": str(trtq), "PYTHON": sys.executable, "PYTHONPATH": str(REPO),
                        "TRTQ_PAIRS": "busi:calib:val", "TRTQ_SHARED_DATASETS": str(tmp_path)}
    subprocess.run(["bash", "experiments/w8a8_accuracy.sh", str(out), "percentile"], cwd=REPO,
                   env=env, check=True, capture_output=True)
    data = json.loads((out / "w8a8-accuracy.json").read_text())
    assert sorted(data["runs"]) == ["busi-fp32", "busi-percentile"]
    assert data["runs"]["busi-fp32"] == {"miou": 0.8, "instances": 3}
    assert data["provenance"]["command"] == \
        f'TRTQ_PAIRS="busi:calib:val" experiments/w8a8_accuracy.sh {out} percentile'


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_starts(script):
    """`--help` runs: the script's imports (trtq, its _provenance/_steps neighbours) resolve."""
    out = subprocess.run([sys.executable, str(EXPERIMENTS / script), "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env=os.environ | {"PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout
