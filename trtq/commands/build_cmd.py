"""`trtq build`: TensorRT engines from ONNX (one file, or every part of an export folder).

With --print-trtexec nothing is built: it prints the trtexec command line that builds the same
engine with the detected TensorRT, or with the release named by --trt-version.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trtq.errors import ArtifactError, BackendError

log = logging.getLogger("trtq.engines")
PARTS = ("encoder", "decoder")


def _jobs(onnx: Path, out: Path, precision: str | None) -> list[tuple[Path, Path, str]]:
    """(onnx, engine, precision) per build; a folder builds each part it holds."""
    from trtq.artifacts import export_pair
    from trtq.engines.build import onnx_content

    if onnx.is_dir():
        found = [onnx / f"{part}.onnx" for part in PARTS if (onnx / f"{part}.onnx").is_file()]
        if not found:
            raise ArtifactError(f"{onnx} holds no encoder.onnx or decoder.onnx; pass a `trtq "
                                "export` folder or one .onnx file")
        if out.suffix == ".engine":
            raise ArtifactError(f"--onnx {onnx} is a folder, so --out must be a folder too "
                                f"(got {out})")
        export_pair(onnx)  # an encoder and a decoder from different exports are refused
    elif not onnx.is_file():
        raise ArtifactError(f"--onnx {onnx} does not exist; run `trtq export` first")
    else:
        found = [onnx]
    jobs = []
    for path in found:
        chosen = precision or ("int8" if onnx_content(path).qdq else "fp16")
        engine = out / f"{path.stem}.{chosen}.engine" if onnx.is_dir() else out
        jobs.append((path, engine, chosen))
    return jobs


def _shapes(args, onnx: Path) -> dict:
    """The --shapes that concern `onnx`: in a folder build each part takes its own inputs'."""
    from trtq.engines.shapes import onnx_input_dims, parse_shape_arg

    shapes = dict(parse_shape_arg(text) for text in args.shapes or ())
    if not Path(args.onnx).is_dir():
        return shapes
    inputs = onnx_input_dims(onnx)
    return {name: shape for name, shape in shapes.items() if name in inputs}


def _check_shape_names(args, jobs) -> None:
    from trtq.engines.shapes import onnx_input_dims, parse_shape_arg

    names = {parse_shape_arg(text)[0] for text in args.shapes or ()}
    known = set().union(*(onnx_input_dims(onnx) for onnx, _, _ in jobs))
    if names - known:
        raise BackendError(f"--shapes names {sorted(names - known)}, which no model input has "
                           f"(inputs: {sorted(known)})")


def _options(args, precision: str, onnx: Path):
    from trtq.engines.build import BuildOptions

    shapes = _shapes(args, onnx)
    return BuildOptions(precision=precision, workspace_mib=args.workspace, dla_core=args.dla,
                        timing_cache=args.timing_cache, plugins=tuple(args.plugins or ()),
                        shapes=shapes, strongly_typed=True if args.strongly_typed else None)


def _target_version(args):
    from trtq.engines.versions import module_version, parse_version

    if args.trt_version:
        return parse_version(args.trt_version)
    from trtq.engines.tensorrt_api import import_tensorrt

    version = module_version(import_tensorrt())
    if version.rtx:
        raise BackendError("only TensorRT-RTX is installed here, which has no trtexec; name the "
                           "target release with --trt-version (e.g. 10.3 for JetPack 6, 8.6 "
                           "for JetPack 6.0, 11.4 for JetPack 7.2)")
    return version


def _print_trtexec(args, jobs) -> int:
    from trtq.engines.build import fp16_onnx_path
    from trtq.engines.shapes import onnx_input_dims, resolve_profile
    from trtq.engines.trtexec import TrtexecOptions, find_trtexec, trtexec_command

    version = _target_version(args)
    binary = find_trtexec() or "trtexec"
    for onnx, engine, precision in jobs:
        options = _options(args, precision, onnx)
        strongly = (version.always_strongly_typed if options.strongly_typed is None
                    else options.strongly_typed)
        source = onnx
        if precision == "fp16" and strongly:
            source = fp16_onnx_path(engine)
            print(f"# {source}: the FP16 conversion of {onnx} that `trtq build` writes "
                  "(strongly typed FP16 needs FP16 types in the ONNX)")
        profile = resolve_profile(onnx_input_dims(onnx), options.shapes)
        command = TrtexecOptions(
            onnx=str(source), engine=str(engine), precision=precision,
            workspace_mib=options.workspace_mib, dla_core=options.dla_core,
            timing_cache=options.timing_cache, plugins=options.plugins, shapes=profile,
            strongly_typed=options.strongly_typed,
            layer_info=f"{engine}.layers.json" if args.engine_info else None)
        print(f"# {version.label}, {precision}")
        print(trtexec_command(command, version, binary))
    return 0


def _engine_info(result) -> None:
    from trtq.engines.device import current_device
    from trtq.engines.engine_check import engine_layers, layer_precisions, load_engine
    from trtq.engines.tensorrt_api import import_tensorrt

    if current_device() is None:
        print(f"  network layers by output type (before build; the engine inspector needs a "
              f"GPU): {result.network_dtypes}")
        return
    trt = import_tensorrt()
    layers = engine_layers(load_engine(result.engine, trt), trt)
    print(f"  engine layers by output precision: {layer_precisions(layers)}")


def _outputs(jobs) -> list[str]:
    """The file names a folder build writes: engines, sidecars, FP16 conversions."""
    from trtq.artifacts import sidecar_path
    from trtq.engines.build import fp16_onnx_path

    names = []
    for _, engine, precision in jobs:
        paths = [engine] + ([fp16_onnx_path(engine)] if precision == "fp16" else [])
        names += [n for p in paths for n in (p.name, sidecar_path(p).name)]
    return names


def _build(args, onnx: Path, engine: Path, precision: str) -> None:
    from trtq.engines.build import build_engine

    result = build_engine(onnx, engine, _options(args, precision, onnx), force=args.force)
    rec = result.record
    where = "ahead of time, no GPU" if rec["ahead_of_time"] else rec["device"]["name"]
    final = Path(args.out) / engine.name if Path(args.onnx).is_dir() else engine
    print(f"built {final}: {result.size_bytes / 1e6:.1f} MB in {result.seconds:.1f} s "
          f"({precision}, {rec['tensorrt']['module']} {rec['tensorrt']['version']}, {where}, "
          f"{'strongly' if rec['build']['strongly_typed'] else 'weakly'} typed)")
    kept = rec["build"]["precision_constraints"]
    if kept["status"] == "applied":
        print(f"  layers kept float (obeyed precision constraints): {kept['layers']}")
    if args.engine_info:
        _engine_info(result)


def run(args) -> int:
    from trtq.artifacts import check_writable
    from trtq.staging import check_folder_outputs, staged_folder

    jobs = _jobs(Path(args.onnx), Path(args.out), args.precision)
    _check_shape_names(args, jobs)
    if args.print_trtexec:
        return _print_trtexec(args, jobs)
    if args.trt_version:
        raise BackendError("--trt-version only names the release for --print-trtexec; a build "
                           "uses the TensorRT installed here")
    if not Path(args.onnx).is_dir():
        check_writable(jobs[0][1], args.force)
        _build(args, *jobs[0])
        return 0
    names = _outputs(jobs)
    check_folder_outputs(args.out, names, args.force)  # refuse before the first build
    with staged_folder(args.out, names, args.force) as stage:  # all engines, or none
        for onnx, engine, precision in jobs:
            _build(args, onnx, stage / engine.name, precision)
    return 0
