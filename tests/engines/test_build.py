"""`trtq.engines.build`: engine files, sidecars and refusals, with the real TensorRT-RTX builder
(ahead of time on the CPU) or real TensorRT where installed."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from trtq.engines.build import BuildOptions, build_engine, fp16_onnx_path
from trtq.engines.build_config import check_dla
from trtq.engines.device import DeviceInfo, module_has_dla
from trtq.engines.engine_check import check_engine, datatype_of, layer_precisions
from trtq.engines.versions import module_version, parse_version
from trtq.errors import ArtifactError, BackendError

ORIN_NANO = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
AGX_ORIN = "NVIDIA Jetson AGX Orin Developer Kit"


def test_fp32_decoder_engine_and_sidecar(trt, tiny_onnx, tmp_path):
    engine = tmp_path / "decoder.fp32.engine"
    result = build_engine(tiny_onnx / "decoder.onnx", engine, BuildOptions(
        precision="fp32", shapes={"boxes": ((1, 4), (2, 4), (8, 4))}), trt=trt)
    assert engine.stat().st_size == result.size_bytes > 1_000_000
    record = json.loads((tmp_path / "decoder.fp32.engine.json").read_text())
    assert record["kind"] == "tensorrt-engine" and record["precision"] == "fp32"
    assert record["tensorrt"] == {"module": trt.__name__, "version": trt.__version__,
                                  "rtx": module_version(trt).rtx}
    assert record["build"]["shapes"] == {"boxes": [[1, 4], [2, 4], [8, 4]]}
    assert record["model"] == "tiny_litemedsam" and record["part"] == "decoder"
    assert record["inputs"]["onnx"] == json.loads(
        (tiny_onnx / "decoder.onnx.json").read_text())["sha256"]
    assert result.network_dtypes["FLOAT"] > 100
    assert check_engine(engine, trt)["sha256"] == record["sha256"]


def test_existing_engine_needs_force(trt, tiny_onnx, tmp_path):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"keep me")
    with pytest.raises(ArtifactError, match="--force"):
        build_engine(tiny_onnx / "decoder.onnx", engine, BuildOptions(precision="fp32"), trt=trt)
    assert engine.read_bytes() == b"keep me"
    build_engine(tiny_onnx / "decoder.onnx", engine, BuildOptions(precision="fp32"),
                 force=True, trt=trt)
    assert engine.stat().st_size > 1_000_000


def test_int8_build_keeps_qdq_and_refuses_mismatched_precision(trt, tiny_qdq, tiny_onnx,
                                                               tmp_path):
    qdq = tiny_qdq["tensorrt"] / "encoder.onnx"
    result = build_engine(qdq, tmp_path / "enc.int8.engine", BuildOptions(precision="int8"),
                          trt=trt)
    assert result.network_dtypes.get("INT8", 0) > 20  # the QuantizeLinear layers
    assert result.record["recipe_sha256"] == json.loads(
        (tiny_qdq["tensorrt"] / "encoder.onnx.json").read_text())["recipe_sha256"]
    with pytest.raises(ArtifactError, match="no Q/DQ nodes.*trtq export --calibrated"):
        build_engine(tiny_onnx / "encoder.onnx", tmp_path / "x.engine",
                     BuildOptions(precision="int8"), trt=trt)
    with pytest.raises(ArtifactError, match="INT8 Q/DQ model; build it with --precision int8"):
        build_engine(qdq, tmp_path / "y.engine", BuildOptions(precision="fp16"), trt=trt)


def test_fp16_on_a_strongly_typed_builder_converts_the_onnx(trt, tiny_onnx, tmp_path):
    if not module_version(trt).always_strongly_typed:
        pytest.skip(f"{trt.__name__} {trt.__version__} builds FP16 with the builder flag")
    engine = tmp_path / "encoder.fp16.engine"
    result = build_engine(tiny_onnx / "encoder.onnx", engine, BuildOptions(precision="fp16"),
                          trt=trt)
    assert result.onnx_built == fp16_onnx_path(engine) == tmp_path / "encoder.fp16.onnx"
    converted = onnx.load(str(result.onnx_built))
    halves = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in converted.graph.initializer)
    assert halves > 50
    assert result.network_dtypes.get("HALF", 0) > result.network_dtypes.get("FLOAT", 0)
    assert result.record["build"]["onnx_built"] == "encoder.fp16.onnx"
    assert set(result.record["build"]) >= {"strongly_typed", "workspace_mib", "plugins"}


def test_parser_rejection_shows_the_parsers_message(trt, tmp_path, qdq_conv):
    path = qdq_conv(tmp_path / "asymmetric.onnx", activation_zero_point=3)
    with pytest.raises(BackendError) as info:
        build_engine(path, tmp_path / "a.engine", BuildOptions(precision="int8"), trt=trt)
    message = str(info.value)
    assert "cannot parse" in message and "x_q" in message
    assert "zero point" in message.lower() or "shiftIsAllZeros" in message
    assert not (tmp_path / "a.engine").exists()


def test_missing_plugin_says_to_load_it(trt, tiny_ptq4sam_qdq, tmp_path):
    with pytest.raises(BackendError) as info:
        build_engine(tiny_ptq4sam_qdq["plugin"] / "decoder.onnx", tmp_path / "d.engine",
                     BuildOptions(precision="int8"), trt=trt)
    message = str(info.value)
    assert "Plugin not found" in message and "--plugins" in message
    assert "--logquant onnx" in message


def test_plugin_library_paths_are_checked(trt, tiny_onnx, tmp_path):
    text = tmp_path / "plugin.cu"
    text.write_text("__global__ void k() {}\n")
    for bad, expected in ((tmp_path / "absent.so", "does not exist"),
                          (text, "not a shared library")):
        with pytest.raises(ArtifactError, match=expected):
            build_engine(tiny_onnx / "decoder.onnx", tmp_path / "p.engine",
                         BuildOptions(precision="fp32", plugins=(str(bad),)), trt=trt)


def test_timing_cache_is_written_where_tensorrt_has_one(trt, tiny_onnx, tmp_path, caplog):
    cache = tmp_path / "cache" / "timing.bin"
    cache.parent.mkdir()
    for name in ("a.engine", "b.engine"):  # the second build reads the first one's cache
        build_engine(tiny_onnx / "decoder.onnx", tmp_path / name,
                     BuildOptions(precision="fp32", timing_cache=str(cache)), trt=trt)
        if module_version(trt).rtx:  # timing caches are no-ops in TensorRT-RTX 1.2+
            assert not cache.exists() and "--timing-cache" in caplog.text
        else:
            assert cache.stat().st_size > 0


def test_dla_refusals(trt, tiny_onnx, tmp_path):
    version = module_version(trt)
    if version.rtx:
        with pytest.raises(BackendError, match="no DLA support"):
            build_engine(tiny_onnx / "decoder.onnx", tmp_path / "dla.engine",
                         BuildOptions(precision="fp16", dla_core=0), trt=trt)
    with pytest.raises(BackendError, match="Orin Nano.*has no DLA cores.*drop --dla"):
        check_dla(parse_version("10.3"), 0, None, ORIN_NANO)
    with pytest.raises(BackendError, match="TensorRT reports 0"):
        check_dla(parse_version("10.3"), 0, 0, None)
    with pytest.raises(BackendError, match="has 2 DLA core"):
        check_dla(parse_version("10.3"), 2, 2, AGX_ORIN)
    with pytest.raises(BackendError, match="10.7 was the last 10.x"):
        check_dla(parse_version("11.2"), 0, 2, AGX_ORIN)
    check_dla(parse_version("10.3"), 1, 2, AGX_ORIN)  # JetPack 6 on AGX Orin: allowed
    check_dla(parse_version("11.4"), 0, 2, AGX_ORIN)
    assert (module_has_dla(ORIN_NANO), module_has_dla(AGX_ORIN)) == (False, True)
    with pytest.raises(BackendError, match="only FP16 and INT8"):
        BuildOptions(precision="fp32", dla_core=0)


def test_engine_from_elsewhere_is_refused_with_a_rebuild_hint(trt, tiny_onnx, tmp_path):
    engine = tmp_path / "decoder.fp32.engine"
    build_engine(tiny_onnx / "decoder.onnx", engine, BuildOptions(precision="fp32"), trt=trt)
    sidecar = tmp_path / "decoder.fp32.engine.json"
    record = json.loads(sidecar.read_text())
    record["tensorrt"] = {"module": "tensorrt", "version": "10.3.0.30", "rtx": False}
    record["device"] = DeviceInfo("Orin", "8.7", AGX_ORIN).to_dict()
    sidecar.write_text(json.dumps(record))
    here = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0")
    with pytest.raises(ArtifactError) as info:
        check_engine(engine, trt, device=here)
    message = str(info.value)
    assert "built with tensorrt 10.3.0.30" in message and trt.__version__ in message
    assert "Orin (NVIDIA Jetson AGX Orin Developer Kit), compute capability 8.7" in message
    assert "NVIDIA H100 80GB HBM3, compute capability 9.0" in message
    assert "rebuild it on this machine with `trtq build --onnx decoder.onnx" in message
    with pytest.raises(ArtifactError, match="no CUDA GPU is visible"):
        check_engine(engine, trt, device=None)


def test_changed_or_unknown_engine_files_are_refused(trt, tiny_onnx, tmp_path):
    engine = tmp_path / "d.engine"
    build_engine(tiny_onnx / "decoder.onnx", engine, BuildOptions(precision="fp32"), trt=trt)
    stray = tmp_path / "stray.engine"
    shutil.copy(engine, stray)
    with pytest.raises(ArtifactError, match="sidecar.*missing|is missing"):
        check_engine(stray, trt)
    with open(engine, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        check_engine(engine, trt)
    with pytest.raises(ArtifactError, match="does not exist; build it"):
        check_engine(tmp_path / "absent.engine", trt)


def test_inspector_formats_map_to_precisions():
    layers = [{"Name": "conv", "Outputs": [{"Format/Datatype": "Channel major INT8 format"}]},
              {"Name": "mm", "Outputs": [{"Format/Datatype": "Row major linear FP16 format"}]},
              {"Name": "ln", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
              {"Name": "q", "Outputs": [{"Format/Datatype": "Int8"}]},
              {"Name": "sm", "Outputs": [{"Format/Datatype": "Half"}]}]
    assert layer_precisions(layers) == {"int8": 2, "fp16": 2, "fp32": 1}
    assert datatype_of("Float") == "fp32" and datatype_of("weird") == "other"
