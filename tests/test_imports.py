"""Every submodule imports with only the core dependencies, and optional backends stay lazy."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import trtq

OPTIONAL = (
    "tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings", "cuda", "pycuda", "jtop", "onnxruntime",
    "transformers",  # a dev dependency for examples/, never one of trtq's
)


def _submodules() -> list[str]:
    names = (m.name for m in pkgutil.walk_packages(trtq.__path__, "trtq."))
    return sorted(n for n in names if n != "trtq.__main__")  # __main__ runs the CLI


def test_every_submodule_imports():
    names = _submodules()
    assert "trtq.models.tiny_vit" in names and "trtq.commands.run_cmd" in names
    for name in names:
        importlib.import_module(name)


def test_importing_everything_loads_no_optional_backend():
    code = ("import importlib, pkgutil, sys, trtq\n"
            "for m in pkgutil.walk_packages(trtq.__path__, 'trtq.'):\n"
            "    if m.name != 'trtq.__main__':\n"
            "        importlib.import_module(m.name)\n"
            f"print([m for m in {OPTIONAL!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
