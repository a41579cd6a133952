"""The Python IPluginV3 for LogQuant: fields, creator, registration, parse and build.

Registration changes the process-wide plugin registry (and a parse of a plugin node can abort
the interpreter under TensorRT-RTX 1.7, see trtq/plugins/python_plugin.py), so everything that
registers or parses runs in a child process; in this process the plugin classes are only
instantiated. Running an engine with the plugin needs a GPU with TensorRT and is not tested here.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from trtq.errors import ArtifactError, BackendError
from trtq.plugins import kernel as kernel_module
from trtq.plugins import python_plugin as pp
from trtq.plugins.python_plugin import LogQuantFields, fields_from_collection

REPO = Path(__file__).resolve().parents[2]
# Every child starts like this and ends by printing one JSON line after RESULT.
PRELUDE = """
import json, logging, sys
from trtq.engines.tensorrt_api import build_serialized, import_tensorrt, network_layers, parse_onnx
from trtq.errors import BackendError
from trtq.plugins import python_plugin as pp
trt = import_tensorrt()
def result(**values):
    print("RESULT " + json.dumps(values), flush=True)
"""


@pytest.fixture(scope="module")
def trt_module():
    """The TensorRT (or TensorRT-RTX) module; a GPU is not needed."""
    from trtq.engines.tensorrt_api import import_tensorrt

    try:
        return import_tensorrt()
    except BackendError as exc:
        pytest.skip(str(exc))


def run_child(code: str, *args: str, env: dict[str, str] | None = None):
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-c", PRELUDE + code, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def child_result(done) -> dict:
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.returncode, done.stdout[-3000:],
                                            done.stderr[-3000:])
    return json.loads(lines[-1][len("RESULT "):])


def logquant_onnx(path: Path, dtype: str = "float32", **attrs) -> Path:
    """A one-node graph y = trtq::LogQuant(x) on a [2, 3, 8] tensor."""
    import onnx
    from onnx import TensorProto, helper

    kind = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[dtype]
    node = helper.make_node("LogQuant", ["x"], ["y"], domain="trtq", name="lq", **attrs)
    graph = helper.make_graph([node], "logquant", [helper.make_tensor_value_info("x", kind,
                                                                                 [2, 3, 8])],
                              [helper.make_tensor_value_info("y", kind, [2, 3, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("trtq", 1)])
    onnx.save(model, path)
    return path


def needs_kernel_for_timing(trt):
    """TensorRT (not RTX) times plugins during a build: the kernel must then be buildable."""
    if not pp.is_rtx(trt) and not os.environ.get(pp.KERNEL_ENV) and not kernel_module.find_nvcc():
        pytest.skip("TensorRT times the plugin while building: set TRTQ_LOGQUANT_KERNEL or "
                    "install nvcc")


# --- fields and the kernel library path: no TensorRT needed ---------------------------------

def fake_field(name, values, kind):
    return SimpleNamespace(name=name, data=np.array(values), type=SimpleNamespace(name=kind))


GOOD = [fake_field("bits", [4], "INT32"), fake_field("tau", [2], "INT32"),
        fake_field("scale", [0.25], "FLOAT32")]


def test_fields_from_collection_reads_bits_tau_scale():
    fields = fields_from_collection("n0", list(reversed(GOOD)))
    assert fields == LogQuantFields(bits=4, tau=2, scale=0.25)
    assert isinstance(fields.bits, int) and isinstance(fields.scale, float)


@pytest.mark.parametrize("fields, expected", [
    (GOOD[:2], "missing attribute(s) ['scale']"),
    (GOOD + [fake_field("axis", [1], "INT32")], "unknown ['axis']"),
    ([fake_field("bits", [12], "INT32"), *GOOD[1:]], "bits=12: use 2..8"),
    ([GOOD[0], fake_field("tau", [3], "INT32"), GOOD[2]], "tau=3: use one of (1, 2, 4)"),
    ([*GOOD[:2], fake_field("scale", [0.0], "FLOAT32")], "scale=0.0: needs a finite value > 0"),
    ([*GOOD[:2], fake_field("scale", [math.inf], "FLOAT32")], "scale=inf"),
    ([fake_field("bits", [4.0], "FLOAT32"), *GOOD[1:]], "bits must be one integer, got FLOAT32"),
    ([fake_field("bits", [4, 4], "INT32"), *GOOD[1:]], "got INT32 [4, 4]"),
])
def test_invalid_fields_name_the_node_and_the_fix(fields, expected):
    with pytest.raises(ArtifactError) as info:
        fields_from_collection("dec/lq3", fields)
    message = str(info.value)
    assert expected in message and "'dec/lq3'" in message
    assert "trtq export --logquant plugin" in message


def test_kernel_library_path_argument_then_env_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(pp.KERNEL_ENV, raising=False)
    given, from_env = tmp_path / "given.so", tmp_path / "env.so"
    given.write_bytes(b"x")
    from_env.write_bytes(b"x")
    monkeypatch.setenv(pp.KERNEL_ENV, str(from_env))
    assert pp.kernel_library_path(given) == given
    assert pp.kernel_library_path() == from_env
    with pytest.raises(ArtifactError, match="kernel_library_path=.*nope.so does not exist"):
        pp.kernel_library_path(tmp_path / "nope.so")
    monkeypatch.setenv(pp.KERNEL_ENV, str(tmp_path / "gone.so"))
    with pytest.raises(ArtifactError, match="TRTQ_LOGQUANT_KERNEL=.*gone.so does not exist"):
        pp.kernel_library_path()


def test_kernel_library_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path))
    monkeypatch.delenv(pp.KERNEL_ENV, raising=False)
    monkeypatch.setattr(kernel_module, "find_nvcc", lambda: None)
    with pytest.raises(BackendError, match="nvcc is not on PATH"):
        pp.kernel_library_path()  # nothing cached: it tries to compile
    built = []

    def fake_build(out):
        built.append(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"so")

    monkeypatch.setattr(pp, "build_kernel_library", fake_build)
    first, second = pp.kernel_library_path(), pp.kernel_library_path()
    assert first == second == built[0] and len(built) == 1
    assert first.parent == tmp_path / "plugins" and first.name.startswith("liblogquant_kernel-")


# --- the plugin classes in this process (nothing registered) --------------------------------

def test_creator_names_and_field_names(trt_module):
    trt = trt_module
    creator = pp.make_creator(trt)
    assert isinstance(creator, trt.IPluginCreatorV3One)
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == \
        ("LogQuant", "1", "trtq")
    assert [(f.name, f.type) for f in creator.field_names] == [
        ("bits", trt.PluginFieldType.INT32), ("tau", trt.PluginFieldType.INT32),
        ("scale", trt.PluginFieldType.FLOAT32)]


def test_create_plugin_with_valid_fields(trt_module):
    trt = trt_module
    creator = pp.make_creator(trt)
    fields = LogQuantFields(bits=6, tau=4, scale=0.75)
    given = pp.field_collection(trt, fields)
    plugin = creator.create_plugin("lq0", given, trt.TensorRTPhase.BUILD)
    assert all(isinstance(plugin, interface) for interface in (
        trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime))
    assert creator.created == [("lq0", "BUILD")]
    assert plugin.fields == fields and plugin.num_outputs == 1
    assert (plugin.plugin_name, plugin.plugin_version, plugin.plugin_namespace) == \
        ("LogQuant", "1", "trtq")
    for kind in (trt.PluginCapabilityType.CORE, trt.PluginCapabilityType.BUILD,
                 trt.PluginCapabilityType.RUNTIME):
        assert plugin.get_capability_interface(kind) is plugin
    assert plugin.get_output_data_types([trt.DataType.HALF]) == [trt.DataType.HALF]
    twin = plugin.clone()
    assert twin is not plugin and twin.fields == fields and twin.kernel is plugin.kernel
    serialized = plugin.get_fields_to_serialize()
    del given, twin
    gc.collect()  # the serialized fields stay valid while the plugin lives
    np.full(1000, 7, dtype=np.int32)
    assert fields_from_collection("lq0", serialized) == fields
    assert plugin.get_valid_tactics() == []


def test_create_plugin_with_invalid_fields(trt_module):
    trt = trt_module
    creator = pp.make_creator(trt)
    # a PluginField only points into its array: keep the arrays alive
    bits, tau, scale = (np.array([9], np.int32), np.array([2], np.int32),
                        np.array([1.0], np.float32))
    bad = trt.PluginFieldCollection([
        trt.PluginField("bits", bits, trt.PluginFieldType.INT32),
        trt.PluginField("tau", tau, trt.PluginFieldType.INT32),
        trt.PluginField("scale", scale, trt.PluginFieldType.FLOAT32)])
    with pytest.raises(ArtifactError, match="node 'lq9': LogQuant bits=9: use 2..8"):
        creator.create_plugin("lq9", bad, trt.TensorRTPhase.BUILD)
    missing = trt.PluginFieldCollection([bad[1]])
    with pytest.raises(ArtifactError, match=r"missing attribute\(s\) \['bits', 'scale'\]"):
        creator.create_plugin("lq", missing, trt.TensorRTPhase.RUNTIME)
    assert creator.created == []


class FakeKernelLibrary:
    """Records what `enqueue` would launch (running the kernel needs a GPU)."""

    def __init__(self):
        self.params_calls, self.launches = [], []

    def params(self, bits, tau, scale):
        self.params_calls.append((bits, tau, scale))
        return "params"

    def launch(self, dtype, x_ptr, y_ptr, n, params, stream=0):
        self.launches.append((dtype, x_ptr, y_ptr, n, params, stream))


def test_enqueue_launches_the_kernel_on_the_stream(trt_module, monkeypatch):
    trt = trt_module
    fake = FakeKernelLibrary()
    monkeypatch.setattr(pp.LazyKernel, "library", lambda self: fake)
    plugin = pp.make_creator(trt).create_plugin(
        "lq", pp.field_collection(trt, LogQuantFields(5, 2, 0.5)), trt.TensorRTPhase.RUNTIME)
    runtime = plugin.attach_to_context(None)
    assert runtime is not plugin and runtime.fields == plugin.fields
    desc = trt.PluginTensorDesc()
    desc.dims, desc.type = trt.Dims([2, 3, 8]), trt.DataType.HALF
    runtime.enqueue([desc], [desc], [0x1000], [0x2000], 0, 77)
    desc.type = trt.DataType.FLOAT
    runtime.enqueue([desc], [desc], [0x3000], [0x3000], 0, 78)
    assert fake.params_calls == [(5, 2, 0.5)]  # made once per plugin
    assert fake.launches == [("float16", 0x1000, 0x2000, 48, "params", 77),
                             ("float32", 0x3000, 0x3000, 48, "params", 78)]
    desc.type = trt.DataType.INT8
    with pytest.raises(BackendError, match="FLOAT or HALF tensors, not DataType.INT8"):
        runtime.enqueue([desc], [desc], [0x1000], [0x2000], 0, 77)


def test_registration_refused_where_a_parse_would_abort(trt_module):
    trt = trt_module
    if pp.python_plugin_blocker(trt) is None:
        pytest.skip(f"{trt.__name__} can host Python plugins in this process")
    with pytest.raises(BackendError) as info:
        pp.register_logquant_plugin(trt)
    message = str(info.value)
    alias = pp.rtx_alias_dir(trt)
    assert f"LD_LIBRARY_PATH={alias}" in message and "--logquant onnx" in message
    assert (alias / "libtensorrt_rtx.so").resolve() == pp.loaded_rtx_library().resolve()
    assert trt.get_plugin_registry().get_creator("LogQuant", "1", "trtq") is None


# --- registration, parse and build in child processes ---------------------------------------

def test_registration_puts_one_creator_in_the_registry(trt_module):
    done = run_child("""
registry = trt.get_plugin_registry()
creator = pp.register_logquant_plugin(trt)
again = pp.register_logquant_plugin(trt, "/elsewhere/kernel.so")
found = registry.get_creator("LogQuant", "1", "trtq")
result(same=again is creator, found=found is creator, kernel=str(creator.kernel.path),
       fields=[f.name for f in found.field_names],
       other_namespace=registry.get_creator("LogQuant", "1", "") is None,
       other_version=registry.get_creator("LogQuant", "2", "trtq") is None)
""", env=pp.python_plugin_env(trt_module))
    assert child_result(done) == {
        "same": True, "found": True, "kernel": "/elsewhere/kernel.so",
        "fields": ["bits", "tau", "scale"], "other_namespace": True, "other_version": True}


BUILD_CHILD = """
creator = pp.register_logquant_plugin(trt)
parsed = parse_onnx(sys.argv[1], trt)
layers = network_layers(parsed)
plan = build_serialized(parsed)
result(plugin_layers=[l.name for l in layers if l.type == "PLUGIN_V3"],
       dtypes=sorted({d for l in layers if l.type == "PLUGIN_V3" for d in l.output_dtypes}),
       created=creator.created, plan_bytes=len(plan),
       in_plan=[m for m in ("LogQuant", "trtq", "bits", "tau", "scale") if m.encode() in plan])
"""


@pytest.mark.parametrize("dtype, trt_dtype", [("float32", "FLOAT"), ("float16", "HALF")])
def test_logquant_node_parses_and_builds(trt, tmp_path, dtype, trt_dtype):
    needs_kernel_for_timing(trt)
    path = logquant_onnx(tmp_path / "lq.onnx", dtype, bits=4, tau=2, scale=1.5)
    out = child_result(run_child(BUILD_CHILD, str(path), env=pp.python_plugin_env(trt)))
    assert out["plugin_layers"] == ["lq"] and out["dtypes"] == [trt_dtype]
    assert ["lq", "BUILD"] in out["created"]
    assert out["plan_bytes"] > 1000
    assert out["in_plan"] == ["LogQuant", "trtq", "bits", "tau", "scale"]


def test_tiny_ptq4sam_plugin_decoder_builds(trt, tiny_ptq4sam_qdq):
    needs_kernel_for_timing(trt)
    path = tiny_ptq4sam_qdq["plugin"] / "decoder.onnx"
    out = child_result(run_child(BUILD_CHILD, str(path), env=pp.python_plugin_env(trt)))
    assert len(out["plugin_layers"]) == len(set(out["plugin_layers"])) == 7
    built = {name for name, phase in out["created"] if phase == "BUILD"}
    assert built == set(out["plugin_layers"])
    assert out["plan_bytes"] > 100_000 and "LogQuant" in out["in_plan"]


def test_invalid_node_is_a_parser_error(trt, tmp_path):
    path = logquant_onnx(tmp_path / "bad.onnx", bits=12, tau=2, scale=1.5)
    done = run_child("""
pp.register_logquant_plugin(trt)
try:
    parse_onnx(sys.argv[1], trt)
    result(error=None)
except BackendError as exc:
    result(error=str(exc))
""", str(path), env=pp.python_plugin_env(trt))
    error = child_result(done)["error"]
    assert "[node lq, op LogQuant]" in error and "Could not create the plugin" in error
    # TensorRT's Python bindings print the exception create_plugin raised
    assert "node 'lq': LogQuant bits=12: use 2..8" in done.stderr


def test_rtx_parser_aborts_without_the_library_name(trt, tmp_path):
    """Why registration is refused: TensorRT-RTX 1.7 reaches create_plugin, gets the plugin,
    then dlopen('libtensorrt_rtx.so') fails inside a noexcept call and the process aborts."""
    if not pp.is_rtx(trt):
        pytest.skip("only TensorRT-RTX adds plugin layers through dlopen('libtensorrt_rtx.so')")
    path = logquant_onnx(tmp_path / "lq.onnx", bits=4, tau=2, scale=1.5)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(
        p for p in env.get("LD_LIBRARY_PATH", "").split(":")
        if p and not (Path(p) / "libtensorrt_rtx.so").exists())
    done = run_child("""
if pp.python_plugin_blocker(trt) is None:
    result(skip="libtensorrt_rtx.so resolves here (a fixed install)")
    sys.exit(0)
logging.basicConfig(stream=sys.stdout, level=logging.DEBUG)
trt.get_plugin_registry().register_creator(pp.make_creator(trt), "trtq")  # no safety check
print("parsed", parse_onnx(sys.argv[1], trt), flush=True)
""", str(path), env=env)
    if "RESULT" in done.stdout:
        pytest.skip(child_result(done)["skip"])
    assert done.returncode == -signal.SIGABRT, (done.returncode, done.stderr[-2000:])
    assert "LogQuant plugin for node lq (TensorRTPhase.BUILD)" in done.stdout
    assert "terminate called without an active exception" in done.stderr
    assert "parsed" not in done.stdout
