"""`trtq deploy`: probe a Jetson, push, build and benchmark there, pull the results back.

Every device command goes through `Remote`, so `--dry-run` lists exactly what a real run would
execute. The order: probe (read-only) → checks (tools, TensorRT, disk) → push and verify →
plugin → per model: build, benchmark → manifest → pull and verify → local report.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from trtq.deploy import plan
from trtq.deploy.probe import DeviceFacts, assumed_facts, parse_probe, probe_script
from trtq.deploy.ssh import Remote, Retry, SshTarget, quote_path, require_local_tools
from trtq.deploy.transfer import (
    TransferStats,
    local_sums,
    parse_sums,
    remote_sums,
    rsync,
    stage_files,
    verify,
)
from trtq.errors import ArtifactError, BackendError, TrtqError

log = logging.getLogger("trtq.deploy")
DEVICE_FOLDER = "device"  # under --out: the pulled results/ folder


@dataclass(frozen=True)
class DeployConfig:
    """One `trtq deploy` (CLI flags map one-to-one onto these fields)."""

    target: SshTarget
    onnx: tuple[Path, ...]
    out: Path
    remote_dir: str = "trtq-deploy"
    dry_run: bool = False
    force: bool = False
    reserve_mib: float = 512
    bench: plan.BenchSettings = field(default_factory=plan.BenchSettings)
    jetpack: str | None = None  # offline dry run: assume this JetPack, do not connect
    module: str = "NVIDIA Jetson (module not probed)"
    bwlimit_kib: int | None = None
    use_trtq: bool = True  # build with trtq where the device has it

    def __post_init__(self) -> None:
        if self.jetpack and not self.dry_run:
            raise TrtqError("--jetpack plans offline and only goes with --dry-run; a real "
                            "deploy reads the JetPack version from the device")
        if not self.remote_dir or any(c in self.remote_dir for c in "\n\0") or \
                self.remote_dir.startswith("-"):
            raise TrtqError(f"--remote-dir {self.remote_dir!r} is not a usable folder name")
        if self.reserve_mib < 0:
            raise TrtqError(f"--reserve-mib must be >= 0, got {self.reserve_mib}")


@dataclass
class DeployResult:
    facts: DeviceFacts
    jobs: list[plan.Job]
    commands: list[tuple[str, str]]
    push: TransferStats | None = None
    pull: TransferStats | None = None
    report: dict | None = None
    tries: dict[str, int] = field(default_factory=dict)


def _remote(cfg: DeployConfig, path: str = "") -> str:
    return f"{cfg.remote_dir.rstrip('/')}/{path}" if path else cfg.remote_dir.rstrip("/")


def _in_dir(cfg: DeployConfig, command: str) -> str:
    return f"cd {quote_path(_remote(cfg))} && {command}"


def probe(cfg: DeployConfig, remote: Remote) -> DeviceFacts:
    if cfg.jetpack:
        return assumed_facts(cfg.jetpack, cfg.module)
    command = f"sh -s {quote_path(_remote(cfg))}"
    out = remote.run("detect the device (read-only)", command, stdin=probe_script(),
                     stdin_name="<trtq>/deploy/probe.sh", read_only=True, timeout_s=60)
    return parse_probe(out)


def check_device(facts: DeviceFacts, jobs: list[plan.Job], cfg: DeployConfig) -> None:
    """Refuse, before anything is pushed, what the device cannot do."""
    if not facts.l4t:
        log.warning("%s has no /etc/nv_tegra_release: not a Jetson (or not L4T); going on",
                    cfg.target.host)
    version = facts.trt_version()
    missing = [tool for tool in ("rsync", "sha256sum") if not getattr(facts, tool)]
    if missing:
        raise BackendError(f"the device lacks {', '.join(missing)}: sudo apt install "
                           f"{' '.join('coreutils' if t == 'sha256sum' else t for t in missing)}")
    if not facts.trtexec:
        raise BackendError(f"trtexec is missing on {cfg.target.host} (not on PATH nor at "
                           "/usr/src/tensorrt/bin/trtexec): sudo apt install libnvinfer-bin "
                           "(JetPack's TensorRT tools), then rerun")
    if any(job.logquant for job in jobs):
        if version.major < 10:
            raise BackendError(f"{version.label} on the device has no IPluginV3, which the "
                               "LogQuant plugin needs: export with `trtq export --logquant "
                               "onnx` (standard ops) for JetPack 5.x/6.0")
        if not facts.nvcc or not facts.cmake:
            raise BackendError("the LogQuant plugin is built on the device, which lacks "
                               f"{'nvcc' if not facts.nvcc else 'cmake'}: sudo apt install "
                               "nvidia-jetpack cmake (or export with --logquant onnx)")
    if cfg.bench.dla_core is not None and facts.dla is False:
        raise BackendError(f"{facts.model} has no DLA cores; drop --dla")
    check_disk(facts, jobs, cfg)


def check_disk(facts: DeviceFacts, jobs: list[plan.Job], cfg: DeployConfig) -> None:
    need = plan.needed_mib(jobs, cfg.reserve_mib)
    if facts.disk_free_mib is None:
        if facts.probed:
            log.warning("could not read the device's free disk space; going on")
        return
    if facts.disk_free_mib < need["total"]:
        raise BackendError(
            f"the device has {facts.disk_free_mib:.0f} MiB free for {_remote(cfg)}, and this "
            f"deploy needs {need['total']:.0f} MiB (inputs {need['inputs']:.0f}, engines about "
            f"{need['engines']:.0f}, plugin {need['plugin']:.0f}, logs {need['logs']:.0f}, "
            f"reserve {need['reserve']:.0f}). Free space on the device, or lower --reserve-mib")


def _stage(jobs: list[plan.Job], folder: Path) -> None:
    """Symlinks laid out as the device folder (rsync --copy-links sends the targets)."""
    (folder / "bin").mkdir(parents=True)
    (folder / "inputs").mkdir()
    package = resources.files("trtq.deploy")
    with resources.as_file(package.joinpath("device_runner.sh")) as runner:
        (folder / plan.RUNNER).symlink_to(Path(runner).resolve())
    for job in jobs:
        (folder / job.remote_onnx).symlink_to(job.onnx.resolve())
    if any(job.logquant for job in jobs):
        from trtq.plugins.kernel import SOURCE_DIR

        src = folder / plan.PLUGIN_SRC
        src.mkdir(parents=True)
        for item in sorted(SOURCE_DIR.iterdir()):
            if item.is_file() and item.suffix in {".cu", ".h", ".cpp", ".txt", ".sh"}:
                (src / item.name).symlink_to(item.resolve())


def _shown(path: Path) -> str:
    """A local path for the dry-run listing: relative to here when below it."""
    path = path.absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _staged(jobs: list[plan.Job]) -> str:
    links = [f"{plan.RUNNER} = <trtq>/deploy/device_runner.sh"]
    links += [f"{job.remote_onnx} = {_shown(job.onnx)}" for job in jobs]
    if any(job.logquant for job in jobs):
        links.append(f"{plan.PLUGIN_SRC}/ = <trtq>/plugins/logquant/")
    return "; ".join(links)


def push(cfg: DeployConfig, remote: Remote, jobs: list[plan.Job]) -> TransferStats:
    folders = " ".join(quote_path(_remote(cfg, f)) for f in ("bin", "inputs", "engines",
                                                             "results"))
    remote.run("create the deploy folder", f"mkdir -p {folders}")
    with tempfile.TemporaryDirectory(prefix="trtq-deploy-") as tmp:
        stage = Path(tmp)
        _stage(jobs, stage)
        destination = f"{cfg.target.host}:{_remote(cfg)}/"
        names = stage_files(stage)
        what = "push models, plugin sources, runner"
        if remote.dry_run:  # the staging folder is temporary: say what it holds
            what += f" (STAGE = a temporary folder of links: {_staged(jobs)})"
            source = "STAGE/"
        else:
            source = f"{stage}/"
        stats = rsync(remote, source, destination, what, cfg.bwlimit_kib)
        pushed = remote_sums(remote, _remote(cfg), names, "verify the pushed files")
        if not remote.dry_run:
            verify(local_sums(stage, names), pushed, "push")
    return stats


def build_and_bench(cfg: DeployConfig, remote: Remote, facts: DeviceFacts,
                    jobs: list[plan.Job]) -> None:
    version = facts.trt_version()
    trtq = facts.trtq if cfg.use_trtq else ""
    if any(job.logquant for job in jobs):
        remote.run("build the LogQuant plugin (CMake)", _in_dir(cfg, plan.runner_command(
            "plugin", plan.PLUGIN_SRC, plan.PLUGIN_LIB)), timeout_s=1800)
    for job in jobs:
        argv = plan.build_argv(job, version, facts.trtexec, trtq, cfg.bench)
        remote.run(f"build {job.name}", _in_dir(cfg, plan.runner_command(
            "build", job.name, job.remote_onnx, "--", *argv)), timeout_s=3600)
    for job in jobs:
        argv = plan.bench_argv(job, version, facts.trtexec, cfg.bench)
        remote.run(f"benchmark {job.name}", _in_dir(cfg, plan.runner_command(
            "bench", job.name, facts.tegrastats, "--", *argv)), timeout_s=3600)


def pull(cfg: DeployConfig, remote: Remote) -> TransferStats:
    remote.run("list the results (SHA-256 manifest)", _in_dir(cfg, plan.runner_command(
        "manifest")))
    local = cfg.out / DEVICE_FOLDER
    source = f"{cfg.target.host}:{_remote(cfg, 'results')}/"
    if not remote.dry_run:
        local.mkdir(parents=True, exist_ok=True)
    stats = rsync(remote, source, f"{local}/", "pull the results", cfg.bwlimit_kib)
    if not remote.dry_run:
        manifest = local / "manifest.sha256"
        if not manifest.is_file():
            raise ArtifactError(f"the pull brought no {manifest.name}; rerun the deploy")
        expected = parse_sums(manifest.read_text(encoding="utf-8"))
        verify(expected, local_sums(local, sorted(expected)), "pull")
    return stats


def _check_out(cfg: DeployConfig) -> None:
    """--out must be a folder that can be created and holds no report yet (or --force)."""
    from trtq.staging import check_folder_outputs

    check_folder_outputs(cfg.out, ("report.json", "report.md"), cfg.force)


def deploy(cfg: DeployConfig, retry: Retry | None = None) -> DeployResult:
    """Run (or, with dry_run, only plan) one deploy; see the module docstring."""
    jobs = plan.gather_jobs(list(cfg.onnx))
    if not cfg.jetpack:
        require_local_tools("ssh", "rsync")
    if not cfg.dry_run:
        _check_out(cfg)
    remote = Remote(cfg.target, dry_run=cfg.dry_run, retry=retry)
    facts = probe(cfg, remote)
    log.info("device: %s", facts.describe())
    check_device(facts, jobs, cfg)
    result = DeployResult(facts, jobs, remote.commands, tries=remote.tries)
    result.push = push(cfg, remote, jobs)
    build_and_bench(cfg, remote, facts, jobs)
    result.pull = pull(cfg, remote)
    if not cfg.dry_run:
        from trtq.deploy.report import write_report

        result.report = write_report(cfg, facts, jobs)
    return result
