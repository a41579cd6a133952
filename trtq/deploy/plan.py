"""What a deploy does on the device: the jobs (one engine each) and their command lines.

The device folder (relative to the login's home unless absolute):
    bin/trtq-device.sh        the runner (device_runner.sh)
    inputs/NAME.onnx          pushed models (NAME = part.precision, e.g. encoder.int8)
    plugin/src, plugin/lib    LogQuant plugin sources and the libraries built from them
    engines/NAME.engine       engines built on the device (they stay there)
    results/                  logs, layer info, timings, tegrastats: pulled back
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from trtq.artifacts import export_pair
from trtq.engines.trtexec import TrtexecOptions, trtexec_argv
from trtq.engines.versions import TrtVersion
from trtq.errors import ArtifactError, BackendError

RUNNER = "bin/trtq-device.sh"
PLUGIN_SRC, PLUGIN_LIB = "plugin/src", "plugin/lib"
PLUGIN_FILE = "liblogquant_trt.so"
RUN_FOLDERS = ("onnx", "onnx-int8-tensorrt")  # what `trtq run` writes: FP32 and INT8 Q/DQ
PARTS = ("encoder", "decoder")
ENGINE_BYTES_PER_ONNX_BYTE = 2.0  # measured 0.7-1.3x for LiteMedSAM (README); kept generous
PLUGIN_BUILD_MIB = 64
LOG_MIB = 16


@dataclass(frozen=True)
class Job:
    """One engine to build and benchmark on the device."""

    name: str
    onnx: Path
    precision: str
    logquant: bool
    profile: dict = field(default_factory=dict)  # dynamic inputs: name -> (min, opt, max)

    @property
    def remote_onnx(self) -> str:
        return f"inputs/{self.name}.onnx"

    @property
    def engine(self) -> str:
        return f"engines/{self.name}.engine"

    def bench_shapes(self) -> dict:
        return {name: shapes[1] for name, shapes in self.profile.items()}


def _onnx_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix != ".onnx":
            raise ArtifactError(f"--onnx {path} is not an .onnx file")
        return [path]
    if not path.is_dir():
        raise ArtifactError(f"--onnx {path} does not exist; pass an .onnx file, a `trtq "
                            "export` folder or a `trtq run` output folder")
    if any((path / sub).is_dir() for sub in RUN_FOLDERS):  # a `trtq run` folder
        return [f for sub in RUN_FOLDERS for f in _onnx_files(path / sub)
                if (path / sub).is_dir()]
    found = [path / f"{part}.onnx" for part in PARTS if (path / f"{part}.onnx").is_file()]
    if not found:
        raise ArtifactError(f"{path} holds no encoder.onnx or decoder.onnx (nor a `trtq run` "
                            f"folder's {' or '.join(RUN_FOLDERS)}/)")
    export_pair(path)  # an encoder and a decoder from different exports are refused
    return found


def _refuse_external_data(onnx: Path) -> None:
    from trtq.export.onnx_files import external_data_files, load_graph

    files = external_data_files(load_graph(onnx))
    if files:
        raise ArtifactError(f"{onnx} keeps its weights in {', '.join(sorted(files))} (a model "
                            "over 2 GB); trtq deploy pushes single-file ONNX only: copy the "
                            "folder to the device and run `trtq build` there")


def gather_jobs(paths: list[Path]) -> list[Job]:
    """One job per ONNX file: INT8 where it has Q/DQ nodes, else the FP16 baseline."""
    from trtq.engines.build import onnx_content
    from trtq.engines.shapes import onnx_input_dims, resolve_profile

    jobs: dict[str, Job] = {}
    for path in paths:
        for onnx in _onnx_files(Path(path)):
            _refuse_external_data(onnx)
            content = onnx_content(onnx)
            precision = "int8" if content.qdq else "fp16"
            name = f"{onnx.stem}.{precision}"
            if name in jobs:
                raise ArtifactError(f"{onnx} and {jobs[name].onnx} would both be {name} on the "
                                    "device; deploy them in separate runs (--remote-dir)")
            jobs[name] = Job(name, onnx, precision, content.logquant,
                             resolve_profile(onnx_input_dims(onnx)))
    if not jobs:
        raise ArtifactError("nothing to deploy: pass --onnx")
    return list(jobs.values())


@dataclass(frozen=True)
class BenchSettings:
    iterations: int = 100
    duration_s: float = 10.0
    dla_core: int | None = None
    workspace_mib: int | None = None


def needed_mib(jobs: list[Job], reserve_mib: float) -> dict[str, float]:
    """Device disk the deploy needs: inputs, engines (estimated), plugin build, logs, reserve."""
    onnx = sum(job.onnx.stat().st_size for job in jobs) / 2**20
    parts = {"inputs": onnx, "engines": onnx * ENGINE_BYTES_PER_ONNX_BYTE,
             "plugin": PLUGIN_BUILD_MIB if any(job.logquant for job in jobs) else 0,
             "logs": LOG_MIB, "reserve": reserve_mib}
    parts["total"] = sum(parts.values())
    return parts


def _plugin_flags(job: Job, version: TrtVersion) -> list[str]:
    if not job.logquant:
        return []
    flag = "--staticPlugins" if version.has_load_library else "--plugins"
    return [f"{flag}={PLUGIN_LIB}/{PLUGIN_FILE}"]


def build_argv(job: Job, version: TrtVersion, trtexec: str, trtq: str,
               settings: BenchSettings) -> list[str]:
    """The device command that builds `job`'s engine into engines/NAME.partial/NAME.engine (the
    runner renames it to engines/NAME.engine when the build passes)."""
    partial = f"engines/{job.name}.partial/{job.name}.engine"
    if trtq:
        argv = [trtq, "build", "--onnx", job.remote_onnx, "--out", partial, "--precision",
                job.precision, "--force"]
        if job.logquant:
            argv += ["--plugins", f"{PLUGIN_LIB}/{PLUGIN_FILE}"]
        if settings.dla_core is not None:
            argv += ["--dla", str(settings.dla_core)]
        if settings.workspace_mib is not None:
            argv += ["--workspace", str(settings.workspace_mib)]
        return argv
    if version.always_strongly_typed and job.precision == "fp16":
        raise BackendError(f"{version.label} builds strongly typed only, so an FP16 engine needs "
                           f"an FP16 ONNX; {job.onnx} is FP32. Install trtq on the device (it "
                           "converts), or convert it here first")
    options = TrtexecOptions(
        onnx=job.remote_onnx, engine=partial, precision=job.precision,
        workspace_mib=settings.workspace_mib, dla_core=settings.dla_core,
        plugins=(f"{PLUGIN_LIB}/{PLUGIN_FILE}",) if job.logquant else (),
        shapes=job.profile, layer_info=f"results/{job.name}.layers.json.partial")
    return trtexec_argv(options, version, trtexec)


def bench_argv(job: Job, version: TrtVersion, trtexec: str, settings: BenchSettings) -> list:
    from trtq.bench.trtexec_run import trtexec_bench_argv

    return trtexec_bench_argv(job.engine, trtexec, shapes=job.bench_shapes() or None,
                              iterations=settings.iterations, duration_s=settings.duration_s,
                              export_times=f"results/{job.name}.times.json.partial",
                              export_profile=f"results/{job.name}.profile.json.partial",
                              extra=_plugin_flags(job, version))


def runner_command(step: str, *args: str) -> str:
    """`sh bin/trtq-device.sh STEP ARGS...` as one quoted shell line."""
    return shlex.join(["sh", RUNNER, step, *args])
