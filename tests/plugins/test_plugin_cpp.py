"""The C++ TensorRT plugin of LogQuant (trtq/plugins/logquant/logquant_plugin.cpp, CMakeLists.txt).

* CMake builds the kernel-only library when cmake and nvcc are here (no TensorRT needed), and
  says that it skipped the plugin targets when TensorRT's headers are absent.
* With TRTQ_TENSORRT_INCLUDE=<folder of NvInferRuntime.h> (an `include/` of a TensorRT 10.x or
  11.x release is enough: headers only, no libnvinfer), the plugin source compiles warning-free
  in both registration variants, and a small C++ driver loads the `loadLibrary` variant and
  calls the plugin the way TensorRT does: creator, fields, validation, shapes, formats,
  serialization, clone and enqueue (on a GPU with real data; without one, a launch that fails
  must make enqueue return non-zero).
* Everywhere: the plugin's name, version, namespace and fields are those of the ONNX export.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from trtq.calib import logquant_onnx
from trtq.errors import BackendError
from trtq.plugins.kernel import DEFAULT_ARCHS, SOURCE_DIR, KernelLibrary, find_nvcc

PLUGIN_SOURCE = SOURCE_DIR / "logquant_plugin.cpp"
CMAKE_LISTS = SOURCE_DIR / "CMakeLists.txt"
ONE_ARCH = "87"  # Jetson Orin; one SM keeps the builds short
ONNX_TO_FIELD_TYPE = {"INT": "kINT32", "FLOAT": "kFLOAT32"}  # what TensorRT's ONNX parser passes


def _cmake_and_nvcc() -> tuple[str, str]:
    cmake, nvcc = shutil.which("cmake"), find_nvcc()
    if cmake is None or nvcc is None:
        pytest.skip("cmake and nvcc (CUDA toolkit) are needed to build the LogQuant libraries")
    return cmake, nvcc


def _tensorrt_include() -> Path:
    raw = os.environ.get("TRTQ_TENSORRT_INCLUDE")
    if not raw:
        pytest.skip("set TRTQ_TENSORRT_INCLUDE to a folder holding TensorRT's NvInferRuntime.h "
                    "(e.g. the include/ of a TensorRT 10.x release) to compile the plugin")
    include = Path(raw)
    if not (include / "NvInferRuntime.h").is_file():
        pytest.fail(f"TRTQ_TENSORRT_INCLUDE={raw} has no NvInferRuntime.h")
    return include


def _cuda_home(nvcc: str) -> Path:
    """The toolkit folder holding include/cuda_runtime_api.h (nvcc may be a wrapper script)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  Path(nvcc).resolve().parent.parent, "/usr/local/cuda"]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "include" / "cuda_runtime_api.h").is_file():
            return Path(candidate)
    pytest.skip(f"no CUDA toolkit headers found beside {nvcc} (set CUDA_HOME)")


def _cmake_build(cmake: str, nvcc: str, build: Path, target: str, *defines: str) -> str:
    configure = subprocess.run(
        [cmake, "-S", str(SOURCE_DIR), "-B", str(build), f"-DCMAKE_CUDA_ARCHITECTURES={ONE_ARCH}",
         f"-DCMAKE_CUDA_COMPILER={nvcc}", *defines], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    done = subprocess.run([cmake, "--build", str(build), "--target", target, "-j2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return configure.stdout


def _source_constant(name: str) -> str:
    found = re.findall(rf'constexpr char {name}\[\] = "([^"]*)";', PLUGIN_SOURCE.read_text())
    assert len(found) == 1, f"{name} is not declared once in {PLUGIN_SOURCE.name}"
    return found[0]


def _declared_fields() -> dict[str, str]:
    """Field name -> PluginFieldType of the creator's getFieldNames()."""
    source = PLUGIN_SOURCE.read_text()
    creator = source[source.index("class LogQuantCreator"):]
    declared = re.findall(r"mFields\.emplace_back\((\w+), nullptr, PluginFieldType::(\w+), 1\)",
                          creator)
    return {_source_constant(constant): kind for constant, kind in declared}


def _exported_node():
    """The trtq::LogQuant node that the plugin form of the export writes."""
    import onnx
    import torch

    class Site(torch.nn.Module):
        def forward(self, x):
            return logquant_onnx.LogQuantFunction.apply(x, 4, 2, 0.25, "plugin")

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Site(), (torch.rand(2, 8),), buffer, opset_version=17, dynamo=False,
                          custom_opsets={logquant_onnx.DOMAIN: logquant_onnx.DOMAIN_VERSION})
    model = onnx.load_from_string(buffer.getvalue())
    (node,) = [n for n in model.graph.node if n.op_type == logquant_onnx.OP_TYPE]
    return node


# (a) CMake, kernel only ------------------------------------------------------------------------

def test_cmake_builds_the_kernel_library_without_tensorrt(tmp_path):
    cmake, nvcc = _cmake_and_nvcc()
    build = tmp_path / "build"
    log = _cmake_build(cmake, nvcc, build, "logquant_kernel",
                       f"-DTENSORRT_INCLUDE_DIR={tmp_path / 'no-tensorrt'}")
    assert "building logquant_kernel only" in log and "TENSORRT_ROOT" in log
    assert not list(build.glob("liblogquant_trt*"))
    lib = KernelLibrary(build / "liblogquant_kernel.so")  # host code only: no GPU needed
    params = lib.params(4, 2, 0.25)
    assert (params.bits, params.tau, params.usable, params.level[0]) == (4, 2, 15, 0.25)
    with pytest.raises(BackendError, match="invalid LogQuant parameters"):
        lib.params(9, 2, 0.25)


def test_cmake_default_architectures_are_the_kernel_builders():
    default = re.search(r'set\(CMAKE_CUDA_ARCHITECTURES "([0-9;]+)"', CMAKE_LISTS.read_text())
    assert default is not None and tuple(default.group(1).split(";")) == DEFAULT_ARCHS


# (b) against TensorRT's headers ----------------------------------------------------------------

@pytest.mark.parametrize("static_registration", [1, 0])
def test_plugin_compiles_against_tensorrt_headers(static_registration):
    include = _tensorrt_include()
    compiler, nvcc = shutil.which("g++"), find_nvcc()
    if compiler is None or nvcc is None:
        pytest.skip("g++ and the CUDA toolkit's headers (cuda_runtime_api.h) are needed")
    command = [compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
               "-Wno-unused-parameter",
               f"-DTRTQ_LOGQUANT_STATIC_REGISTRATION={static_registration}",
               f"-I{SOURCE_DIR}", "-isystem", str(include),
               "-isystem", str(_cuda_home(nvcc) / "include"), str(PLUGIN_SOURCE)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]


def test_plugin_behaves_as_tensorrt_calls_it(tmp_path):
    include = _tensorrt_include()
    cmake, nvcc = _cmake_and_nvcc()
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is needed to compile the driver")
    build = tmp_path / "build"
    _cmake_build(cmake, nvcc, build, "logquant_trt_dynamic", f"-DTENSORRT_INCLUDE_DIR={include}")
    library = build / "liblogquant_trt_dynamic.so"
    driver_source, driver = tmp_path / "driver.cpp", tmp_path / "driver"
    driver_source.write_text(DRIVER)
    cuda = _cuda_home(nvcc)
    libdir = next(p for p in (cuda / "lib64", cuda / "lib") if p.is_dir())
    compiled = subprocess.run(
        [compiler, "-std=c++17", "-isystem", str(include), "-isystem", str(cuda / "include"),
         str(driver_source), "-o", str(driver), f"-L{libdir}", "-lcudart", "-ldl",
         f"-Wl,-rpath,{libdir}"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr[-4000:]
    done = subprocess.run([str(driver), str(library)], capture_output=True, text=True, timeout=120)
    report = done.stdout + done.stderr
    assert done.returncode == 0 and "0 failures" in done.stdout, report
    lines = done.stdout.splitlines()
    assert (f"identity {logquant_onnx.OP_TYPE} {logquant_onnx.DOMAIN_VERSION} "
            f"{logquant_onnx.DOMAIN}") in lines
    assert "serialized bits=4 tau=2 scale=0.25" in lines
    for message in ("bits=9 (need 2..8)", "tau=3 (need 1, 2 or 4)", "(need finite > 0)",
                    "lacks field 'scale'", "field 'bits' must be one number",
                    "bits/tau must be integers"):
        assert message in done.stderr, report
    gpu = re.search(r"gpu (yes|no)", done.stdout).group(1)
    assert ("kernel launch failed" in done.stderr) == (gpu == "no"), report


# (c) the plugin and the ONNX export agree ------------------------------------------------------

def test_plugin_identity_matches_the_onnx_export():
    assert _source_constant("kPluginName") == logquant_onnx.OP_TYPE
    assert _source_constant("kPluginVersion") == str(logquant_onnx.DOMAIN_VERSION)
    assert _source_constant("kPluginNamespace") == logquant_onnx.DOMAIN


def test_plugin_fields_are_the_exported_attributes():
    import onnx

    node = _exported_node()
    exported = {a.name: ONNX_TO_FIELD_TYPE[onnx.AttributeProto.AttributeType.Name(a.type)]
                for a in node.attribute if not a.name.startswith("plugin_")}
    assert _declared_fields() == exported == {"bits": "kINT32", "tau": "kINT32",
                                              "scale": "kFLOAT32"}


def test_exported_node_names_the_plugin_namespace_for_the_onnx_parser():
    attributes = {a.name: a for a in _exported_node().attribute}
    assert "plugin_namespace" in attributes
    assert attributes["plugin_namespace"].s.decode() == _source_constant("kPluginNamespace")
    assert attributes["plugin_version"].s.decode() == _source_constant("kPluginVersion")


DRIVER = r"""
// Calls liblogquant_trt_dynamic.so the way TensorRT does, without TensorRT's libraries.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
using namespace nvinfer1;
using Type = PluginFieldType;
using Cap = PluginCapabilityType;

static int failures = 0;
#define CHECK(c) \
    do { if (!(c)) { std::printf("FAIL line %d: %s\n", __LINE__, #c); ++failures; } } while (0)

template <typename T> static T* cap(IPluginV3* p, Cap t) {
    return static_cast<T*>(p->getCapabilityInterface(t));
}
static std::string metadata(IPluginV3* p) {
    return cap<IPluginV3OneBuild>(p, Cap::kBUILD)->getMetadataString();
}
static bool formats(IPluginV3OneBuild* b, DynamicPluginTensorDesc const* io) {
    return b->supportsFormatCombination(0, io, 1, 1) && b->supportsFormatCombination(1, io, 1, 1);
}

// y = plugin(x) on the GPU for n FP32 or FP16 values (raw 16-bit words for FP16).
template <typename T>
static std::vector<T> run(IPluginV3OneRuntime* rt, DataType type, std::vector<T> x) {
    size_t const bytes = x.size() * sizeof(T);
    void *dx = nullptr, *dy = nullptr;
    cudaMalloc(&dx, bytes);
    cudaMalloc(&dy, bytes);
    cudaMemcpy(dx, x.data(), bytes, cudaMemcpyHostToDevice);
    PluginTensorDesc d{};
    d.type = type;
    d.format = TensorFormat::kLINEAR;
    d.dims.nbDims = 1;
    d.dims.d[0] = int64_t(x.size());
    void const* ins[] = {dx};
    void* outs[] = {dy};
    CHECK(rt->enqueue(&d, &d, ins, outs, nullptr, nullptr) == 0);
    cudaDeviceSynchronize();
    std::vector<T> y(x.size());
    cudaMemcpy(y.data(), dy, bytes, cudaMemcpyDeviceToHost);
    cudaFree(dx);
    cudaFree(dy);
    return y;
}

int main(int argc, char** argv) {
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) { std::printf("FAIL dlopen: %s\n", dlerror()); return 2; }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    CHECK(getCreators != nullptr && dlsym(lib, "setLoggerFinder") != nullptr);
    if (getCreators == nullptr) return 1;
    int32_t nb = 0;
    IPluginCreatorInterface* const* creators = getCreators(nb);
    CHECK(nb == 1);
    CHECK(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    std::printf("identity %s %s %s\n", creator->getPluginName(), creator->getPluginVersion(),
                creator->getPluginNamespace());

    int32_t bits = 4, tau = 2, bad = 9, tau3 = 3, one = 1;
    int64_t bits64 = 4;
    float scale = 0.25f, neg = -1.0f, nan = std::nanf(""), half_bits = 4.5f, unit = 1.0f;
    auto make = [&](std::vector<PluginField> list) {
        PluginFieldCollection fc{int32_t(list.size()), list.data()};
        return creator->createPlugin("lq0", &fc, TensorRTPhase::kBUILD);
    };
    PluginField b{"bits", &bits, Type::kINT32, 1}, t{"tau", &tau, Type::kINT32, 1},
        s{"scale", &scale, Type::kFLOAT32, 1};
    IPluginV3* plugin = make({b, t, s});
    CHECK(plugin != nullptr);
    if (plugin == nullptr) return 1;
    auto* core = cap<IPluginV3OneCore>(plugin, Cap::kCORE);
    auto* build = cap<IPluginV3OneBuild>(plugin, Cap::kBUILD);
    auto* rt = cap<IPluginV3OneRuntime>(plugin, Cap::kRUNTIME);
    CHECK(std::strcmp(core->getPluginNamespace(), creator->getPluginNamespace()) == 0);
    CHECK(build->getNbOutputs() == 1);
    DataType in = DataType::kHALF, out = DataType::kFLOAT;
    CHECK(build->getOutputDataTypes(&out, 1, &in, 1) == 0 && out == DataType::kHALF);

    DynamicPluginTensorDesc io[2]{};
    io[0].desc.format = io[1].desc.format = TensorFormat::kLINEAR;
    io[0].desc.type = io[1].desc.type = DataType::kFLOAT;
    CHECK(formats(build, io));
    CHECK(build->configurePlugin(&io[0], 1, &io[1], 1) == 0);
    io[1].desc.type = DataType::kHALF;
    CHECK(!build->supportsFormatCombination(1, io, 1, 1));
    io[0].desc.type = DataType::kHALF;
    CHECK(formats(build, io));
    io[0].desc.type = DataType::kINT8;
    CHECK(!build->supportsFormatCombination(0, io, 1, 1));
    io[0].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kCHW32;
    CHECK(!build->supportsFormatCombination(0, io, 1, 1));

    DimsExprs shape{}, result{};
    shape.nbDims = 3;
    for (int i = 0; i < 3; ++i) {
        shape.d[i] = reinterpret_cast<IDimensionExpr const*>(uintptr_t(16 * (i + 1)));
    }
    alignas(16) unsigned char storage[64] = {};  // never used: the shapes are copied
    auto& exprs = *reinterpret_cast<IExprBuilder*>(storage);
    CHECK(build->getOutputShapes(&shape, 1, nullptr, 0, &result, 1, exprs) == 0);
    CHECK(result.nbDims == 3 && result.d[0] == shape.d[0] && result.d[2] == shape.d[2]);

    PluginFieldCollection const* saved = rt->getFieldsToSerialize();
    CHECK(saved->nbFields == 3);
    PluginField const* f = saved->fields;
    std::printf("serialized %s=%d %s=%d %s=%g\n", f[0].name, *(int32_t const*)f[0].data,
                f[1].name, *(int32_t const*)f[1].data, f[2].name, *(float const*)f[2].data);
    IPluginV3* restored = creator->createPlugin("lq0", saved, TensorRTPhase::kRUNTIME);
    IPluginV3* copy = plugin->clone();
    CHECK(restored != nullptr && copy != nullptr);
    std::string const original = metadata(plugin);
    delete plugin;  // the clone must not point into the original
    CHECK(original == metadata(restored) && original == metadata(copy));
    rt = cap<IPluginV3OneRuntime>(copy, Cap::kRUNTIME);
    CHECK(*(float const*)rt->getFieldsToSerialize()->fields[2].data == 0.25f);
    CHECK(rt->attachToContext(nullptr) != nullptr);

    PluginTensorDesc d{};
    d.type = DataType::kFLOAT;
    d.format = TensorFormat::kLINEAR;
    d.dims.nbDims = 2;
    d.dims.d[0] = 0;
    d.dims.d[1] = 64;
    float dummy[8] = {};
    void const* ins[] = {dummy};
    void* outs[] = {dummy};
    CHECK(rt->enqueue(&d, &d, ins, outs, nullptr, nullptr) == 0);  // nothing to do, no launch
    d.type = DataType::kINT8;
    CHECK(rt->enqueue(&d, &d, ins, outs, nullptr, nullptr) != 0);

    int devices = 0;
    bool const gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
    std::printf("gpu %s\n", gpu ? "yes" : "no");
    if (!gpu) {  // the launch fails: enqueue must say so
        d.type = DataType::kFLOAT;
        d.dims.d[0] = 2;
        CHECK(rt->enqueue(&d, &d, ins, outs, nullptr, nullptr) != 0);
    } else {  // bits 4, tau 1, scale 1: levels 2^-q, thresholds 2^-(q + 1/2)
        PluginField t1{"tau", &one, Type::kINT32, 1}, s1{"scale", &unit, Type::kFLOAT32, 1};
        IPluginV3* p = make({b, t1, s1});
        auto* r = cap<IPluginV3OneRuntime>(p, Cap::kRUNTIME);
        std::vector<float> want32 = {1.0f, 0.5f, 0.25f, 0.0f, 0.0f};
        CHECK(run<float>(r, DataType::kFLOAT, {1.0f, 0.6f, 0.3f, -1.0f, 0.0f}) == want32);
        std::vector<uint16_t> want16 = {0x3C00, 0x3800, 0x3400, 0x0000, 0x0000};  // as above
        CHECK(run<uint16_t>(r, DataType::kHALF, {0x3C00, 0x38CD, 0x34CD, 0xBC00, 0}) == want16);
        delete p;
    }

    PluginField b9{"bits", &bad, Type::kINT32, 1}, t3{"tau", &tau3, Type::kINT32, 1};
    CHECK(make({b9, t3, {"scale", &neg, Type::kFLOAT32, 1}}) == nullptr);
    CHECK(make({b, t, {"scale", &nan, Type::kFLOAT32, 1}}) == nullptr);
    CHECK(make({b, t}) == nullptr);
    CHECK(make({{"bits", &bits, Type::kCHAR, 1}, t, s}) == nullptr);
    CHECK(make({{"bits", &half_bits, Type::kFLOAT32, 1}, t, s}) == nullptr);
    IPluginV3* wide = make({{"bits", &bits64, Type::kINT64, 1}, t, s});
    CHECK(wide != nullptr);
    delete wide;
    delete restored;
    delete copy;
    std::printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
"""
