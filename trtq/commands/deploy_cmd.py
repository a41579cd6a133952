"""`trtq deploy`: push, build and benchmark on a Jetson over SSH; `--dry-run` prints the plan."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("trtq.deploy")


def config_from_args(args):
    from trtq.deploy.deploy import DeployConfig
    from trtq.deploy.plan import BenchSettings
    from trtq.deploy.ssh import SshTarget

    target = SshTarget(args.host, port=args.port, key=args.key, config=args.ssh_config,
                       options=tuple(args.ssh_option or ()))
    bench = BenchSettings(iterations=args.iterations, duration_s=args.duration,
                          dla_core=args.dla, workspace_mib=args.workspace)
    return DeployConfig(target=target, onnx=tuple(Path(p) for p in args.onnx),
                        out=Path(args.out), remote_dir=args.remote_dir, dry_run=args.dry_run,
                        force=args.force, reserve_mib=args.reserve_mib, bench=bench,
                        jetpack=args.jetpack, module=args.module, bwlimit_kib=args.bwlimit,
                        use_trtq=not args.no_trtq)


def describe_device(result, reserve_mib: float) -> list[str]:
    from trtq.deploy.plan import needed_mib

    facts = result.facts
    how = "probed" if facts.probed else "assumed from --jetpack, not probed"
    memory = (f"{facts.mem_available_mib:.0f} of {facts.mem_total_mib:.0f} MiB available"
              if facts.mem_available_mib and facts.mem_total_mib else "not read")
    disk = f"{facts.disk_free_mib:.0f} MiB free" if facts.disk_free_mib is not None \
        else "not read"
    dla = {True: "yes", False: "none", None: "unknown"}[facts.dla]
    nvp = (facts.power_mode or {}).get("nvpmodel")
    mode = f"{nvp['mode']}" if nvp else "not read"
    need = needed_mib(result.jobs, reserve_mib)
    return [f"# device ({how}): {facts.describe()}",
            f"#   DLA: {dla}; power mode: {mode}; memory: {memory}; disk: {disk}; trtexec: "
            f"{facts.trtexec or 'missing'}; builds with: "
            f"{'trtq' if facts.trtq else 'trtexec'}",
            f"#   the deploy needs about {need['total']:.0f} MiB of device disk (inputs "
            f"{need['inputs']:.0f}, engines {need['engines']:.0f}, reserve "
            f"{need['reserve']:.0f})",
            "# models: " + ", ".join(f"{job.name} ({job.onnx})" for job in result.jobs)]


def run(args) -> int:
    from trtq.deploy.deploy import deploy

    cfg = config_from_args(args)
    result = deploy(cfg)
    if cfg.dry_run:
        print("\n".join(describe_device(result, cfg.reserve_mib)))
        for number, (what, line) in enumerate(result.commands, 1):
            print(f"# {number}. {what}")
            print(line)
        print("# dry run: nothing above was executed"
              + ("" if cfg.jetpack else " except the read-only probe (step 1)"))
        return 0
    print((cfg.out / "report.md").read_text(encoding="utf-8"), end="")
    log.info("pushed %d new bytes (%d resumed), pulled results into %s", result.push.literal_bytes,
             result.push.matched_bytes, cfg.out)
    return 0
