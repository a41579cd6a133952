"""LogQuant as a Python TensorRT IPluginV3: `register_logquant_plugin(trt)` before parsing.

The ONNX node `trtq::LogQuant` (attributes bits, tau, scale) maps to plugin `LogQuant`, version
"1", namespace "trtq". The plugin follows NVIDIA's Python IPluginV3 sample
(samples/python/python_plugin/circ_pad_plugin_multi_tactic.py): one class implements the core,
build and runtime capabilities, `enqueue` launches the CUDA kernel of `trtq.plugins.kernel`
through ctypes on TensorRT's stream. Registering and building need neither nvcc nor a GPU; the
kernel library is found (or compiled) only when an engine runs: `kernel_library_path`, else
$TRTQ_LOGQUANT_KERNEL, else a copy compiled once into ~/.cache/trtq/plugins/.

An engine holding this plugin runs only in a Python process that registered it first.

TensorRT-RTX 1.7: its ONNX parser adds an IPluginV3 layer through a private API that it looks
up with dlopen("libtensorrt_rtx.so"), but the pip wheels ship only libtensorrt_rtx.so.1; the
failed dlopen throws inside a noexcept function and the process aborts ("terminate called
without an active exception") right after create_plugin. With that name resolvable (a
symlink on LD_LIBRARY_PATH when the process starts, see `python_plugin_env`) the parser and
the ahead-of-time build work. `register_logquant_plugin` refuses (BackendError) where the
name cannot be resolved, so a parse can never abort.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtq.errors import ArtifactError, BackendError
from trtq.plugins import plugin_dir
from trtq.plugins.kernel import SOURCE_DIR, KernelLibrary, build_kernel_library
from trtq.tensorrt_flavour import is_rtx

log = logging.getLogger("trtq.plugins")

PLUGIN_NAME = "LogQuant"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "trtq"
FIELD_NAMES = ("bits", "tau", "scale")
KERNEL_ENV = "TRTQ_LOGQUANT_KERNEL"
RTX_LIBRARY_NAME = "libtensorrt_rtx.so"  # what TensorRT-RTX 1.7's parser dlopens
TAUS = (1, 2, 4)  # as trtq.calib.logquant (not imported: it pulls in PyTorch)
_KERNEL_DTYPES = {"FLOAT": "float32", "HALF": "float16"}
_INT_TYPES = ("INT8", "INT16", "INT32", "INT64")
_FLOAT_TYPES = ("FLOAT16", "FLOAT32", "FLOAT64")
_CLASSES: dict[str, tuple[type, type]] = {}
_COLLECTION_CLASSES: dict[str, type] = {}
_CREATORS: dict[str, object] = {}  # our creator per TensorRT module, kept alive while registered
_LIBRARIES: dict[str, KernelLibrary] = {}


@dataclass(frozen=True)
class LogQuantFields:
    """The attributes of one LogQuant node (the plugin's creation and serialized state)."""

    bits: int
    tau: int
    scale: float

    def __post_init__(self):
        fix = "re-export the graph with trtq export --logquant plugin"
        if not 2 <= self.bits <= 8:
            raise ArtifactError(f"LogQuant bits={self.bits}: use 2..8; {fix}")
        if self.tau not in TAUS:
            raise ArtifactError(f"LogQuant tau={self.tau}: use one of {TAUS}; {fix}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ArtifactError(f"LogQuant scale={self.scale}: needs a finite value > 0; {fix}")


def _scalar(field, kinds: tuple[str, ...], node: str):
    kind = field.type.name
    data = np.asarray(field.data).reshape(-1)
    if kind not in kinds or data.size != 1:
        raise ArtifactError(f"LogQuant node {node!r}: attribute {field.name} must be one "
                            f"{'integer' if kinds == _INT_TYPES else 'float'}, got {kind} "
                            f"{data.tolist()}; re-export with trtq export --logquant plugin")
    return data[0].item()


def fields_from_collection(node: str, fc) -> LogQuantFields:
    """The node's bits/tau/scale from a `trt.PluginFieldCollection`; ArtifactError if invalid."""
    values, unknown = {}, []
    for field in fc:
        if field.name in ("bits", "tau"):
            values[field.name] = int(_scalar(field, _INT_TYPES, node))
        elif field.name == "scale":
            values[field.name] = float(_scalar(field, _FLOAT_TYPES, node))
        else:
            unknown.append(field.name)
    missing = [name for name in FIELD_NAMES if name not in values]
    if missing or unknown:
        raise ArtifactError(f"LogQuant node {node!r}: missing attribute(s) {missing}, unknown "
                            f"{unknown}; it needs exactly {list(FIELD_NAMES)} (re-export with "
                            "trtq export --logquant plugin)")
    try:
        return LogQuantFields(**values)
    except ArtifactError as exc:
        raise ArtifactError(f"node {node!r}: {exc}") from None


def field_collection(trt, fields: LogQuantFields | None = None):
    """bits/tau/scale as a `trt.PluginFieldCollection` (empty arrays without `fields`).

    A `trt.PluginField` keeps only a pointer to its numpy data, so the collection is an
    instance of a subclass that also holds the arrays (`.arrays`)."""
    if trt.__name__ not in _COLLECTION_CLASSES:
        class OwningFieldCollection(trt.PluginFieldCollection):
            arrays: dict[str, np.ndarray]

        _COLLECTION_CLASSES[trt.__name__] = OwningFieldCollection
    arrays = {name: np.array([] if fields is None else [getattr(fields, name)], dtype=dtype)
              for name, dtype in (("bits", np.int32), ("tau", np.int32), ("scale", np.float32))}
    kinds = {"bits": trt.PluginFieldType.INT32, "tau": trt.PluginFieldType.INT32,
             "scale": trt.PluginFieldType.FLOAT32}
    collection = _COLLECTION_CLASSES[trt.__name__](
        [trt.PluginField(name, arrays[name], kinds[name]) for name in FIELD_NAMES])
    collection.arrays = arrays
    return collection


# --- the kernel library, found or built when an engine runs --------------------------------

def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCE_DIR.iterdir()):
        if path.suffix in (".cu", ".h"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def kernel_library_path(explicit: str | os.PathLike | None = None) -> Path:
    """The kernel library: `explicit`, else $TRTQ_LOGQUANT_KERNEL, else the cached build
    (compiled with nvcc on first use, named after the kernel source's hash)."""
    choices = (("kernel_library_path", explicit), (KERNEL_ENV, os.environ.get(KERNEL_ENV)))
    for source, raw in choices:
        if raw:
            path = Path(raw)
            if not path.is_file():
                raise ArtifactError(f"{source}={path} does not exist; build it with "
                                    "trtq.plugins.kernel.build_kernel_library, or unset it")
            return path
    cached = plugin_dir() / f"liblogquant_kernel-{_source_digest()}.so"
    if not cached.is_file():
        log.info("building the LogQuant kernel library into %s", cached)
        build_kernel_library(cached)
    return cached


class LazyKernel:
    """The kernel library of one registration, loaded on first use."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = path

    def library(self) -> KernelLibrary:
        path = str(kernel_library_path(self.path))
        if path not in _LIBRARIES:
            _LIBRARIES[path] = KernelLibrary(path)
        return _LIBRARIES[path]


# --- TensorRT-RTX: make the name its parser dlopens resolvable -----------------------------

def loaded_rtx_library() -> Path | None:
    """Path of the libtensorrt_rtx.so.* this process has loaded (from /proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1]
        if Path(path).name.startswith(RTX_LIBRARY_NAME + "."):
            return Path(path)
    return None


def rtx_alias_dir(trt) -> Path:
    """A folder holding `libtensorrt_rtx.so` → the loaded libtensorrt_rtx.so.N (created once);
    put it on LD_LIBRARY_PATH before starting Python to let TensorRT-RTX host Python plugins."""
    target = loaded_rtx_library()
    if target is None:
        raise BackendError(f"{trt.__name__} is imported but no libtensorrt_rtx.so.* is mapped "
                           "in this process; reinstall tensorrt-rtx-cu13-libs")
    folder = plugin_dir() / f"tensorrt_rtx-{trt.__version__}"
    link = folder / RTX_LIBRARY_NAME
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{RTX_LIBRARY_NAME}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return folder


def python_plugin_env(trt, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default os.environ) for a child process that can parse Python-plugin graphs:
    under TensorRT-RTX, LD_LIBRARY_PATH starts with `rtx_alias_dir`."""
    env = dict(os.environ if env is None else env)
    if is_rtx(trt):
        rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        env["LD_LIBRARY_PATH"] = ":".join([str(rtx_alias_dir(trt)), *rest])
    return env


def python_plugin_blocker(trt) -> str | None:
    """Why this process cannot host a Python IPluginV3 in `trt`'s ONNX parser, or None."""
    if not is_rtx(trt):
        return None
    loaded = loaded_rtx_library()
    if loaded is not None and (loaded.parent / RTX_LIBRARY_NAME).exists():
        return None  # found through the parser's RPATH ($ORIGIN)
    try:  # the rest of the parser's search: LD_LIBRARY_PATH at start-up, ld.so.cache, /lib
        ctypes.CDLL(RTX_LIBRARY_NAME)
        return None
    except OSError:
        pass
    alias = rtx_alias_dir(trt)  # raises where no libtensorrt_rtx.so.* is loaded
    return (f"{trt.__name__} {trt.__version__} cannot host Python plugins in this process: its "
            f"ONNX parser adds plugin layers through dlopen('{RTX_LIBRARY_NAME}'), which the "
            f"wheel does not ship (only {loaded.name}), "
            "and the process would abort at the first LogQuant node. Start Python with "
            f"LD_LIBRARY_PATH={alias} (trtq made the link there), or link it beside the "
            f"library once (ln -s {loaded.name} {loaded.parent / RTX_LIBRARY_NAME}), or export "
            "with --logquant onnx for the plugin-free graph")


# --- the plugin and its creator ------------------------------------------------------------

def _supports_format(trt, pos: int, desc, first) -> bool:
    """Linear FLOAT or HALF input; the output in the input's type."""
    if desc.format != trt.TensorFormat.LINEAR:
        return False
    if pos == 0:
        return desc.type in (trt.DataType.FLOAT, trt.DataType.HALF)
    return desc.type == first.type


def _enqueue(plugin, desc, x_ptr: int, y_ptr: int, stream: int) -> None:
    dtype = _KERNEL_DTYPES.get(desc.type.name)
    if dtype is None:
        raise BackendError(f"LogQuant runs on FLOAT or HALF tensors, not {desc.type}")
    library = plugin.kernel.library()
    if plugin._params is None:
        f = plugin.fields
        plugin._params = library.params(f.bits, f.tau, f.scale)
    library.launch(dtype, x_ptr, y_ptr, math.prod(desc.dims), plugin._params, stream)


def _plugin_class(trt):
    """The plugin class for one TensorRT module (core, build and runtime in one object)."""

    class LogQuantPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild,
                         trt.IPluginV3OneRuntime):
        def __init__(self, fields: LogQuantFields, kernel: LazyKernel, phase=None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.num_outputs = 1
            self.plugin_name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.timing_cache_id = ""  # every instance times alike (as NVIDIA's sample)
            self.fields, self.kernel, self.phase = fields, kernel, phase
            self._params = None  # the kernel's LogQuantParams, made on first enqueue
            self._serialized = None

        def get_capability_interface(self, type):
            return self

        def clone(self):
            twin = LogQuantPlugin(self.fields, self.kernel, self.phase)
            twin._params = self._params
            return twin

        def get_output_data_types(self, input_types):
            return [input_types[0]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            return [trt.DimsExprs(inputs[0])]

        def supports_format_combination(self, pos, in_out, num_inputs):
            return _supports_format(trt, pos, in_out[pos].desc, in_out[0].desc)

        def configure_plugin(self, inputs, outputs):
            pass

        def on_shape_change(self, inputs, outputs):
            pass

        def get_valid_tactics(self):
            return []  # one kernel, no tactics to time

        def set_tactic(self, tactic):
            pass

        def get_fields_to_serialize(self):
            self._serialized = field_collection(trt, self.fields)  # read after we return
            return self._serialized

        def attach_to_context(self, context):
            twin = self.clone()
            twin.kernel.library()  # load (or build) the kernel now, not in the first enqueue
            return twin

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            _enqueue(self, input_desc[0], inputs[0], outputs[0], stream)

    return LogQuantPlugin


def _classes(trt):
    """The plugin and creator classes for one TensorRT module (they subclass its interfaces)."""
    if trt.__name__ in _CLASSES:
        return _CLASSES[trt.__name__]
    plugin_class = _plugin_class(trt)

    class LogQuantCreator(trt.IPluginCreatorV3One):
        def __init__(self, kernel: LazyKernel):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self._field_names = field_collection(trt)  # field_names points into it
            self.field_names = self._field_names
            self.kernel = kernel
            self.created: list[tuple[str, str]] = []  # (node name, phase) of each plugin made

        def create_plugin(self, name, fc, phase):
            fields = fields_from_collection(name, fc)
            self.created.append((name, getattr(phase, "name", str(phase))))
            log.debug("LogQuant plugin for node %s (%s): %s", name, phase, fields)
            return plugin_class(fields, self.kernel, phase)

    _CLASSES[trt.__name__] = (plugin_class, LogQuantCreator)
    return _CLASSES[trt.__name__]


def make_creator(trt, kernel_library_path: str | os.PathLike | None = None):
    """A new LogQuant creator (a `trt.IPluginCreatorV3One`), registered nowhere."""
    return _classes(trt)[1](LazyKernel(kernel_library_path))


def register_logquant_plugin(trt, kernel_library_path: str | os.PathLike | None = None):
    """Register the LogQuant creator in `trt.get_plugin_registry()` (namespace "trtq") once per
    TensorRT module and return it; a later call only updates `kernel_library_path` when given.

    Raises BackendError where the module's parser would abort on the plugin (TensorRT-RTX
    without libtensorrt_rtx.so; see `python_plugin_blocker`)."""
    blocker = python_plugin_blocker(trt)
    if blocker:
        raise BackendError(blocker)
    registry = trt.get_plugin_registry()
    existing = registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    ours = _CREATORS.get(trt.__name__)
    if ours is not None and kernel_library_path is not None:
        ours.kernel.path = kernel_library_path
    if existing is not None:
        if ours is None:
            log.info("a %s::%s v%s creator is already registered (a plugin library?); using it",
                     PLUGIN_NAMESPACE, PLUGIN_NAME, PLUGIN_VERSION)
        return existing if ours is None else ours
    creator = ours or make_creator(trt, kernel_library_path)
    if not registry.register_creator(creator, PLUGIN_NAMESPACE):
        raise BackendError(f"{trt.__name__} refused to register the {PLUGIN_NAMESPACE}::"
                           f"{PLUGIN_NAME} plugin creator")
    _CREATORS[trt.__name__] = creator
    return creator
