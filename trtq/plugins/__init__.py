"""Custom ops: the LogQuant CUDA kernel (`kernel`), its TensorRT IPluginV3 in C++ (sources in
`logquant/`, built with CMake) and its Python registration (`python_plugin`), with the
numpy/PyTorch reference in `trtq.calib.logquant`.

`plugin_library()` finds a built C++ plugin library; `trtq export --logquant auto` (the
default) writes LogQuant as a plugin node only when one is there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("trtq.plugins")

PLUGIN_ENV = "TRTQ_LOGQUANT_PLUGIN"
PLUGIN_FILE = "liblogquant_trt.so"


def plugin_dir() -> Path:
    """Where trtq keeps built plugin libraries: $TRTQ_CACHE/plugins (default ~/.cache/trtq)."""
    from trtq.models.checkpoints import cache_dir

    return cache_dir() / "plugins"


def plugin_library() -> Path | None:
    """The C++ LogQuant plugin library: $TRTQ_LOGQUANT_PLUGIN, else plugin_dir()/liblogquant_trt.so,
    else None (not built on this machine)."""
    named = os.environ.get(PLUGIN_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    candidate = plugin_dir() / PLUGIN_FILE
    return candidate if candidate.is_file() else None


def resolve_logquant_form(form: str, target: str = "tensorrt") -> str:
    """'auto' → 'plugin' for a TensorRT export when the plugin library is built here, else
    'onnx' (standard ops: runs everywhere, no plugin needed); other forms pass through."""
    if form != "auto":
        return form
    library = plugin_library() if target == "tensorrt" else None
    chosen = "plugin" if library else "onnx"
    log.info("--logquant auto: %s", f"plugin node ({library})" if library else
             f"standard ops (no {PLUGIN_FILE} found; set ${PLUGIN_ENV} or build it)")
    return chosen
