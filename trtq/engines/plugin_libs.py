"""Loading TensorRT plugin libraries (.so) before a parse, build or deserialize.

A library is opened with ctypes (RTLD_GLOBAL) first, as `trtexec --staticPlugins` does: a
library that registers its creators when loaded (trtq's liblogquant_trt.so, TensorRT 8.5's only
way) is then registered. One that instead exports `getCreators` (TensorRT 10+'s loadLibrary
contract: trtq's liblogquant_trt_dynamic.so, `trtexec --dynamicPlugins`) is then handed to the
plugin registry's `load_library` (8.6+).
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from trtq.engines.versions import module_version
from trtq.errors import ArtifactError, BackendError

log = logging.getLogger("trtq.engines")

_ELF_MAGIC = b"\x7fELF"
# What the ONNX parser says when a node names a plugin no loaded library registers.
MISSING_PLUGIN_MARKERS = ("Plugin not found", "could not find plugin", "getPluginCreator could")
MISSING_PLUGIN_HINT = ("a node needs a TensorRT plugin that is not loaded: pass its library with "
                       "--plugins (trtq's LogQuant plugin: build liblogquant_trt.so with CMake "
                       "from trtq/plugins/logquant, see the README; or let trtq register its "
                       "Python plugin, see the warning above; or export with --logquant onnx "
                       "for the plugin-free form)")
_LOADED: dict[str, object] = {}


def check_library(path: str | os.PathLike) -> Path:
    """A plugin library path that exists and is an ELF shared object."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"plugin library {path} does not exist; build it first or fix the "
                            "--plugins path")
    with open(path, "rb") as handle:
        if handle.read(4) != _ELF_MAGIC:
            raise ArtifactError(f"plugin library {path} is not a shared library (.so); pass the "
                                "compiled plugin, not its source")
    return path.resolve()


def load_plugin_libraries(trt, paths) -> list[Path]:
    """Load each library once per process into `trt`'s plugin registry; return their paths."""
    loaded = []
    version = module_version(trt)
    for raw in paths:
        path = check_library(raw)
        key = f"{trt.__name__}:{path}"
        if key not in _LOADED:
            try:
                handle = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                if version.has_load_library and hasattr(handle, "getCreators"):
                    handle = trt.get_plugin_registry().load_library(str(path))
            except (OSError, RuntimeError, TypeError) as exc:
                raise BackendError(f"{version.label} cannot load plugin library {path} ({exc}); "
                                   "was it built for this TensorRT version and GPU "
                                   "architecture?") from None
            if handle is None:
                raise BackendError(f"{version.label} refused plugin library {path} (its creators "
                                   "are registered already, or it was built against another "
                                   "TensorRT); rebuild it against this TensorRT version")
            _LOADED[key] = handle
            log.info("loaded plugin library %s", path)
        loaded.append(path)
    return loaded


def mentions_missing_plugin(message: str) -> bool:
    return any(marker.lower() in message.lower() for marker in MISSING_PLUGIN_MARKERS)
