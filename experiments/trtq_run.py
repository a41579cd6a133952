"""`trtq run` with provenance: runs the pipeline, times it, and stores its report.json (FP32
vs INT8 agreement, accuracy, latency) in a results file with a "provenance" block.

    python experiments/trtq_run.py --out experiments/results/trtq-run-litemedsam.json \\
        [--run-dir DIR] -- [trtq run flags, e.g. --recipe w8a8 or --data D --split val]

The wall time covers `trtq run` only (the README's "169 s" also counted a fresh virtual
environment's install, which this script does not do).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _provenance import provenance, save_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--run-dir", type=Path, help="trtq run's --out (default: a temp folder)")
    ap.add_argument("run_args", nargs=argparse.REMAINDER,
                    help="flags for `trtq run` after `--` (not --out)")
    args = ap.parse_args(argv)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    if "--out" in run_args:
        ap.error("give the run folder with --run-dir, not as a trtq run flag")
    block = provenance()
    with tempfile.TemporaryDirectory(prefix="trtqrun_") as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"
        cmd = ["trtq", "run", *run_args, "--out", str(run_dir)]
        print("+", shlex.join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "trtq", *cmd[1:]], check=True)
        seconds = time.perf_counter() - start
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    save_results(args.out, {"steps": [shlex.join(cmd)], "wall_seconds": seconds,
                            "report": report}, block)
    print(f"wrote {args.out} (trtq run took {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
