"""Plugin libraries: a self-registering library is only dlopen-ed (trtexec --staticPlugins);
one exporting `getCreators` also goes to the registry's load_library (TensorRT 8.6+)."""

from __future__ import annotations

import shutil
import subprocess
import types

import pytest

from trtq.engines import plugin_libs
from trtq.errors import BackendError


def _shared_library(tmp_path, name: str, source: str):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the test libraries")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"lib{name}.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out


class _Registry:
    def __init__(self, result="handle"):
        self.loaded, self.result = [], result

    def load_library(self, path):
        self.loaded.append(path)
        return self.result


def _trt(version: str, registry: _Registry):
    return types.SimpleNamespace(__name__="tensorrt", __version__=version,
                                 get_plugin_registry=lambda: registry)


def test_static_and_dynamic_libraries(tmp_path, monkeypatch):
    monkeypatch.setattr(plugin_libs, "_LOADED", {})
    static = _shared_library(tmp_path, "static_reg", "int trtq_marker = 1;\n")
    dynamic = _shared_library(tmp_path, "dynamic_reg",
                              "void* getCreators(int* n) { *n = 0; return 0; }\n")
    registry = _Registry()
    loaded = plugin_libs.load_plugin_libraries(_trt("10.3.0", registry), [static, dynamic])
    assert loaded == [static.resolve(), dynamic.resolve()]
    assert registry.loaded == [str(dynamic.resolve())]  # only the getCreators one
    # once per process: a second call loads nothing again
    plugin_libs.load_plugin_libraries(_trt("10.3.0", registry), [dynamic])
    assert registry.loaded == [str(dynamic.resolve())]


def test_tensorrt_8_5_only_opens_the_library(tmp_path, monkeypatch):
    monkeypatch.setattr(plugin_libs, "_LOADED", {})
    dynamic = _shared_library(tmp_path, "dyn85",
                              "void* getCreators(int* n) { *n = 0; return 0; }\n")
    registry = _Registry()
    plugin_libs.load_plugin_libraries(_trt("8.5.2", registry), [dynamic])
    assert registry.loaded == []  # 8.5 has no IPluginRegistry::loadLibrary


def test_a_refused_library_says_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(plugin_libs, "_LOADED", {})
    dynamic = _shared_library(tmp_path, "refused",
                              "void* getCreators(int* n) { *n = 0; return 0; }\n")
    with pytest.raises(BackendError, match="refused plugin library.*rebuild it"):
        plugin_libs.load_plugin_libraries(_trt("10.3.0", _Registry(result=None)), [dynamic])
