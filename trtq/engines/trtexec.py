"""The trtexec command line that builds the same engine as trtq's builder, per TensorRT version.

`trtq build --print-trtexec` prints it so an engine can be rebuilt (or a build problem reported)
with NVIDIA's own tool. The flags differ between releases; each fact below was read from
samples/common/sampleOptions.cpp (and samples/trtexec/trtexec.cpp) in the NVIDIA/TensorRT
repository at the tag named, line numbers at that tag:

- Workspace: `--memPoolSize=workspace:N` exists from 8.4 (8.4.1 l.698) and is the only form from
  10.0 (`--workspace=N` warns "deprecated by --memPoolSize" in 8.5.2 l.791-793 and v8.6.1
  l.889-891, and is no longer parsed at v10.0.0). A bare number means MiB on every release: 8.5.2
  and v10.0.0 read it as a plain MiB count (8.5.2 l.797-810, help l.1776-1779 "poolfmt ::=
  pool:sizeInMiB"; sampleEngines.cpp l.563 multiplies by 2^20); from v10.1.0 a B/K/M/G suffix is
  accepted and a bare number gets 'M' appended (v10.3.0 l.47-51, l.1124-1135, help l.2444-2446).
  So trtq prints the bare number everywhere: no suffix, which 8.5, 8.6 and 10.0 do not define.
- Precision: `--fp16`/`--int8` exist up to 10.x. `--stronglyTyped` appears at v9.1.0 (l.1076);
  with it, 10.x drops any precision flag with a warning (v10.3.0 l.1231-1247). In 11.x the
  builder options no longer parse `--fp16`/`--int8` at all (v11.0, v11.1: only the safety builder
  keeps `--int8`), and `--stronglyTyped` is a deprecated no-op (v11.1 l.1214, help l.2752).
- Build only: `--buildOnly` up to 8.5 (8.5.2 l.849); v8.6.0 adds `--skipInference` and keeps
  `--buildOnly` as a deprecated alias (v8.6.1 l.964-968); v10.0.0 drops `--buildOnly`; v10.3.0
  l.1259 and v11.1 l.1226 parse `--skipInference`. Layer information is still written when
  inference is skipped (trtexec.cpp 8.5.2 l.249-253, v11.1 l.612-616).
- Plugins: 8.5 knows only `--plugins` (8.5.2 l.1074). v8.6.0 adds `--staticPlugins` (the library
  is dlopen-ed into trtexec, so its static registrars register the creators: v8.6.1 l.1261,
  trtexec.cpp l.376-379) and `--dynamicPlugins` (loaded through the builder's
  IPluginRegistry::loadLibrary, and serialized into the engine when also named in
  `--setPluginsToSerialize`: v8.6.1 l.1265-1272, sampleEngines.cpp l.1237-1239), and `--plugins`
  warns "deprecated, use --staticPlugins" (v8.6.1 l.1256-1258; still so at v10.3.0 l.1571 and
  v11.1 l.1513). trtq prints `--staticPlugins` (8.6+) and `--plugins` (8.5).
- Layer info: `--profilingVerbosity=detailed` exists from 8.2 (8.2.1; 8.5.2 l.911-913, where
  `verbose` is its deprecated spelling, l.922-924); `--dumpLayerInfo` and `--exportLayerInfo`
  likewise (8.5.2 l.1119-1123, v11.1 l.1865-1870).
- Unchanged 8.5 → 11.1: `--timingCacheFile` (8.5.2 l.1018, v11.1 l.1353), `--useDLACore` and
  `--allowGPUFallback` (8.5.2 l.1071-1072, v11.1 l.1511 and l.1224), `--min/opt/maxShapes` as a
  comma-separated list of name:AxBxC where a name with ':' is wrapped in single quotes (8.5.2
  l.150-175, l.339-353, help l.1755).
Whether a release has DLA, strong typing or precision flags comes from `trtq.engines.versions`.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field

from trtq.engines.build_config import PRECISIONS
from trtq.engines.shapes import format_shape
from trtq.engines.versions import TrtVersion
from trtq.errors import BackendError, TrtqError

# Where JetPack's libnvinfer-bin installs trtexec; it is not on PATH there (TENSORRT.md §1.1).
JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"

Shape = tuple[int, ...]
ShapeRange = tuple[Shape, Shape, Shape]


@dataclass(frozen=True)
class TrtexecOptions:
    """What trtq's builder was asked to do, in the terms trtexec needs.

    `shapes` maps an input name to its (min, opt, max) shapes; `strongly_typed=None` means the
    builder's default (strongly typed only where the release has no weak typing: 11.x);
    `layer_info` is the JSON path for `--exportLayerInfo`.
    """

    onnx: str
    engine: str
    _: KW_ONLY
    precision: str = "fp32"
    workspace_mib: int | None = None
    dla_core: int | None = None
    timing_cache: str | None = None
    plugins: tuple[str, ...] = ()
    shapes: Mapping[str, ShapeRange] = field(default_factory=dict)
    strongly_typed: bool | None = None
    layer_info: str | None = None
    build_only: bool = True

    def __post_init__(self) -> None:
        for name in ("onnx", "engine", "timing_cache", "layer_info"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))
        if self.precision not in PRECISIONS:
            raise TrtqError(f"precision must be one of {', '.join(PRECISIONS)}, "
                            f"got {self.precision!r}")
        if self.workspace_mib is not None and not (_is_int(self.workspace_mib)
                                                   and self.workspace_mib > 0):
            raise TrtqError(f"workspace must be a positive number of MiB, got "
                            f"{self.workspace_mib!r}; leave it unset for TensorRT's default")
        if self.dla_core is not None and not (_is_int(self.dla_core) and self.dla_core >= 0):
            raise TrtqError(f"the DLA core is an index from 0 (AGX Orin and Orin NX have cores "
                            f"0 and 1), got {self.dla_core!r}")
        if isinstance(self.plugins, str | os.PathLike):
            raise TrtqError("plugins must be a list of plugin libraries, not one path: "
                            f"write ({os.fspath(self.plugins)!r},)")
        object.__setattr__(self, "plugins", tuple(os.fspath(p) for p in self.plugins))
        object.__setattr__(self, "shapes", {name: _shape_range(name, rng)
                                            for name, rng in self.shapes.items()})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape_range(name: str, shapes) -> ShapeRange:
    """Check one input's (min, opt, max) shapes and return them as tuples of ints."""
    if not name or "," in name or "'" in name:
        raise TrtqError(f"input name {name!r} cannot be written in a trtexec shape list "
                        "(empty, or contains ',' or \"'\"); rename the ONNX input")
    try:
        low, opt, high = (tuple(int(d) for d in shape) for shape in shapes)
    except (TypeError, ValueError) as exc:
        raise TrtqError(f"shapes for input {name!r} must be three shapes (min, opt, max) of "
                        f"integers, got {shapes!r}") from exc
    ok = len(low) == len(opt) == len(high) and all(
        0 < a <= b <= c for a, b, c in zip(low, opt, high, strict=True))
    if not ok:
        raise TrtqError(f"shapes for input {name!r} need equal ranks and 0 < min <= opt <= max "
                        f"in every dimension, got min={low} opt={opt} max={high}")
    return low, opt, high


def trtexec_argv(options: TrtexecOptions, version: TrtVersion,
                 trtexec: str = "trtexec") -> list[str]:
    """The trtexec argument list (program first) for `options` on TensorRT `version`."""
    _check_version(options, version)
    argv = [trtexec, f"--onnx={options.onnx}", f"--saveEngine={options.engine}"]
    argv += _precision_flags(options, version)
    argv += _shape_flags(options.shapes)
    if options.workspace_mib is not None:  # a bare number is MiB on every release (docstring)
        argv.append(f"--memPoolSize=workspace:{options.workspace_mib}")
    if options.dla_core is not None:
        argv += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    plugin_flag = "--staticPlugins" if version.has_load_library else "--plugins"
    argv += [f"{plugin_flag}={library}" for library in options.plugins]
    if options.timing_cache is not None:
        argv.append(f"--timingCacheFile={options.timing_cache}")
    if options.layer_info is not None:
        argv += ["--profilingVerbosity=detailed", "--dumpLayerInfo",
                 f"--exportLayerInfo={options.layer_info}"]
    if options.build_only:
        argv.append("--skipInference" if version.trtexec_has_skip_inference else "--buildOnly")
    return argv


def trtexec_command(options: TrtexecOptions, version: TrtVersion,
                    trtexec: str = "trtexec") -> str:
    """`trtexec_argv` as one shell-quoted line, ready to paste into a terminal."""
    return shlex.join(trtexec_argv(options, version, trtexec))


def _check_version(options: TrtexecOptions, version: TrtVersion) -> None:
    """Refuse what `version` cannot do, with the fix."""
    refusal = version.dla_refusal() if options.dla_core is not None else None
    if refusal is not None:
        raise BackendError(refusal)
    if version.rtx:
        raise BackendError(f"{version.label} has no trtexec (it ships its own tool, whose flags "
                           "trtq does not print); build with `trtq build` instead")
    if options.strongly_typed and not version.has_strongly_typed:
        raise BackendError(f"{version.label} has no strongly typed networks (they start in "
                           "9.1); leave strongly_typed unset to build weakly typed, or use "
                           "TensorRT 10.x or newer")
    if options.strongly_typed is False and version.always_strongly_typed:
        raise BackendError(f"{version.label} builds strongly typed networks only (weak typing "
                           "was removed in 11.0); leave strongly_typed unset, or build with "
                           "TensorRT 10.x for a weakly typed engine")


def _precision_flags(options: TrtexecOptions, version: TrtVersion) -> list[str]:
    """Weak typing: FP16/INT8 builder flags; strong typing: the ONNX's own types decide.

    A Q/DQ INT8 graph built weakly typed also gets --fp16, so that the layers outside the Q/DQ
    pairs run in FP16 rather than FP32. In 11.x strong typing is always on and trtexec takes no
    precision flag, so an FP16 build needs an FP16 ONNX (trtq converts it before building).
    """
    if version.always_strongly_typed:
        return []
    if options.strongly_typed:  # 9.1-10.x, asked for
        return ["--stronglyTyped"]
    return {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[options.precision]


def _shape_flags(shapes: Mapping[str, ShapeRange]) -> list[str]:
    """--minShapes/--optShapes/--maxShapes, inputs in sorted name order, comma-separated."""
    if not shapes:
        return []
    flags = []
    for index, flag in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
        specs = [f"{_quoted_name(name)}:{format_shape(shapes[name][index])}"
                 for name in sorted(shapes)]
        flags.append(f"{flag}={','.join(specs)}")
    return flags


def _quoted_name(name: str) -> str:
    """trtexec splits name:dims at the last ':'; a name containing ':' goes in single quotes."""
    return f"'{name}'" if ":" in name else name


def find_trtexec() -> str | None:
    """trtexec on PATH, else JetPack's `/usr/src/tensorrt/bin/trtexec`, else None."""
    found = shutil.which("trtexec")
    if found:
        return found
    return JETSON_TRTEXEC if os.path.isfile(JETSON_TRTEXEC) else None
