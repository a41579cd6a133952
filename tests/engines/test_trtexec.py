"""The printed trtexec command line per TensorRT version (no TensorRT needed).

The expected flags follow samples/common/sampleOptions.cpp at NVIDIA/TensorRT tags 8.5.2, v8.6.1,
v10.3.0 and v11.1 (see the docstring of trtq/engines/trtexec.py).
"""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from trtq.engines import trtexec as trtexec_module
from trtq.engines.trtexec import (
    JETSON_TRTEXEC,
    TrtexecOptions,
    find_trtexec,
    trtexec_argv,
    trtexec_command,
)
from trtq.engines.versions import TrtVersion, parse_version
from trtq.errors import BackendError, TrtqError

ENCODER = TrtexecOptions("encoder_int8.onnx", "encoder.engine", precision="int8")
DECODER = TrtexecOptions("decoder.onnx", "decoder.engine", precision="fp16",
                         shapes={"boxes": ((1, 1, 4), (1, 4, 4), (1, 16, 4))})
BOXES = ["--minShapes=boxes:1x1x4", "--optShapes=boxes:1x4x4", "--maxShapes=boxes:1x16x4"]


def argv(options: TrtexecOptions, version: str) -> list[str]:
    return trtexec_argv(options, parse_version(version))


def with_(options: TrtexecOptions, **changes) -> TrtexecOptions:
    return dataclasses.replace(options, **changes)  # re-runs the validation


@pytest.mark.parametrize(("version", "expected"), [
    ("8.6", ["--int8", "--fp16", "--skipInference"]),
    ("10.3", ["--int8", "--fp16", "--skipInference"]),
    ("11.4", ["--skipInference"]),
])
def test_int8_encoder(version, expected):
    assert argv(ENCODER, version) == [
        "trtexec", "--onnx=encoder_int8.onnx", "--saveEngine=encoder.engine", *expected]


@pytest.mark.parametrize(("version", "precision"), [
    ("8.6", ["--fp16"]), ("10.3", ["--fp16"]), ("11.4", []),
])
def test_fp16_decoder_with_boxes_profile(version, precision):
    assert argv(DECODER, version) == [
        "trtexec", "--onnx=decoder.onnx", "--saveEngine=decoder.engine", *precision, *BOXES,
        "--skipInference"]


def test_fp32_has_no_precision_flag():
    fp32 = with_(ENCODER, precision="fp32")
    assert argv(fp32, "8.6") == argv(fp32, "11.4") == [
        "trtexec", "--onnx=encoder_int8.onnx", "--saveEngine=encoder.engine", "--skipInference"]


@pytest.mark.parametrize("version", ["11.0", "11.2", "11.4"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("strongly_typed", [None, True])
def test_11x_takes_no_precision_or_typing_flag(version, precision, strongly_typed):
    options = with_(DECODER, precision=precision, strongly_typed=strongly_typed)
    flags = argv(options, version)
    assert not {"--fp16", "--int8", "--stronglyTyped", "--best"} & set(flags)
    assert flags[:3] == ["trtexec", "--onnx=decoder.onnx", "--saveEngine=decoder.engine"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_strongly_typed_on_10x_replaces_precision_flags(precision):
    options = with_(ENCODER, precision=precision, strongly_typed=True)
    assert argv(options, "10.3") == [
        "trtexec", "--onnx=encoder_int8.onnx", "--saveEngine=encoder.engine", "--stronglyTyped",
        "--skipInference"]


@pytest.mark.parametrize("version", ["8.5", "8.6.2"])
def test_strongly_typed_refused_before_9_1(version):
    with pytest.raises(BackendError, match=r"no strongly typed networks.*leave strongly_typed"):
        argv(with_(ENCODER, strongly_typed=True), version)


def test_weak_typing_refused_on_11x():
    with pytest.raises(BackendError, match=r"strongly typed networks only.*TensorRT 10\.x"):
        argv(with_(ENCODER, strongly_typed=False), "11.4")
    # Asking explicitly for weak typing where it is the default changes nothing.
    assert argv(with_(ENCODER, strongly_typed=False), "10.3") == argv(ENCODER, "10.3")


def test_dla_on_10_3():
    assert argv(with_(ENCODER, dla_core=1), "10.3") == [
        "trtexec", "--onnx=encoder_int8.onnx", "--saveEngine=encoder.engine", "--int8", "--fp16",
        "--useDLACore=1", "--allowGPUFallback", "--skipInference"]


def test_dla_on_11_4_has_no_precision_flags():
    assert argv(with_(ENCODER, dla_core=0), "11.4")[3:] == [
        "--useDLACore=0", "--allowGPUFallback", "--skipInference"]


@pytest.mark.parametrize("version", [TrtVersion(11, 2), TrtVersion(10, 8),
                                     TrtVersion(1, 7, rtx=True)])
def test_dla_refused_where_the_release_has_none(version):
    with pytest.raises(BackendError) as caught:
        trtexec_argv(with_(ENCODER, dla_core=0), version)
    assert str(caught.value) == version.dla_refusal()
    assert "no DLA support" in str(caught.value)


def test_tensorrt_rtx_has_no_trtexec():
    with pytest.raises(BackendError, match="has no trtexec"):
        trtexec_argv(DECODER, TrtVersion(1, 7, rtx=True))


STATIC = ["--staticPlugins=/opt/a.so", "--staticPlugins=/opt/b.so"]


@pytest.mark.parametrize(("version", "flags"), [
    ("8.5", ["--plugins=/opt/a.so", "--plugins=/opt/b.so", "--buildOnly"]),
    ("8.6", [*STATIC, "--skipInference"]),
    ("10.3", [*STATIC, "--skipInference"]),
    ("11.4", [*STATIC, "--skipInference"]),
])
def test_plugins(version, flags):
    options = with_(ENCODER, precision="fp32", plugins=["/opt/a.so", "/opt/b.so"])
    assert argv(options, version)[3:] == flags


@pytest.mark.parametrize("version", ["8.5", "8.6", "10.0", "10.3", "11.4"])
def test_workspace_is_mem_pool_size_in_mib_on_every_version(version):
    flags = argv(with_(ENCODER, workspace_mib=2048), version)
    assert "--memPoolSize=workspace:2048" in flags
    assert not [f for f in flags if f.startswith("--workspace")]


@pytest.mark.parametrize(("version", "flag"), [
    ("8.5.2", "--buildOnly"), ("8.6.1", "--skipInference"), ("10.3", "--skipInference"),
    ("11.4", "--skipInference"),
])
def test_build_only_flag(version, flag):
    assert argv(ENCODER, version)[-1] == flag
    assert not {"--buildOnly", "--skipInference"} & set(argv(with_(ENCODER, build_only=False),
                                                            version))


def test_timing_cache_and_layer_info():
    options = with_(DECODER, timing_cache="cache/sam.timing", layer_info="out/layers.json",
                    workspace_mib=512)
    assert argv(options, "10.3") == [
        "trtexec", "--onnx=decoder.onnx", "--saveEngine=decoder.engine", "--fp16", *BOXES,
        "--memPoolSize=workspace:512", "--timingCacheFile=cache/sam.timing",
        "--profilingVerbosity=detailed", "--dumpLayerInfo", "--exportLayerInfo=out/layers.json",
        "--skipInference"]


def test_several_inputs_sorted_and_colon_names_quoted():
    options = with_(DECODER, shapes={
        "point_coords": ((1, 1, 2), (1, 2, 2), (1, 8, 2)),
        "boxes": ((1, 1, 4), (1, 4, 4), (1, 16, 4)),
        "mask:0": ((1, 1, 64, 64),) * 3,
    })
    assert argv(options, "8.6")[4:7] == [
        "--minShapes=boxes:1x1x4,'mask:0':1x1x64x64,point_coords:1x1x2",
        "--optShapes=boxes:1x4x4,'mask:0':1x1x64x64,point_coords:1x2x2",
        "--maxShapes=boxes:1x16x4,'mask:0':1x1x64x64,point_coords:1x8x2"]


def test_command_quotes_a_path_with_a_space():
    options = TrtexecOptions("my models/encoder.onnx", "out dir/encoder.engine",
                             precision="fp16")
    line = trtexec_command(options, parse_version("10.3"), trtexec=JETSON_TRTEXEC)
    assert line == ("/usr/src/tensorrt/bin/trtexec '--onnx=my models/encoder.onnx' "
                    "'--saveEngine=out dir/encoder.engine' --fp16 --skipInference")
    assert shlex.split(line) == trtexec_argv(options, parse_version("10.3"), JETSON_TRTEXEC)


def test_paths_may_be_path_objects(tmp_path):
    options = TrtexecOptions(tmp_path / "a.onnx", tmp_path / "a.engine",
                             plugins=[tmp_path / "p.so"])
    assert argv(options, "10.3")[1:4] == [
        f"--onnx={tmp_path / 'a.onnx'}", f"--saveEngine={tmp_path / 'a.engine'}",
        f"--staticPlugins={tmp_path / 'p.so'}"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"precision": "bf16"}, "precision must be one of fp32, fp16, int8"),
    ({"workspace_mib": 0}, "positive number of MiB"),
    ({"workspace_mib": 1.5}, "positive number of MiB"),
    ({"dla_core": -1}, "index from 0"),
    ({"plugins": "/opt/a.so"}, "not one path"),
    ({"shapes": {"boxes": ((1, 4), (1, 2), (1, 8))}}, "min <= opt <= max"),
    ({"shapes": {"boxes": ((1, 4), (1, 4, 1), (1, 4))}}, "equal ranks"),
    ({"shapes": {"boxes": ((1, 4), (1, 4))}}, "three shapes"),
    ({"shapes": {"a,b": ((1,), (1,), (1,))}}, "rename the ONNX input"),
])
def test_bad_options_say_how_to_fix(changes, message):
    with pytest.raises(TrtqError, match=message):
        with_(ENCODER, **changes)


def test_find_trtexec_prefers_path(monkeypatch):
    monkeypatch.setattr(trtexec_module.shutil, "which", lambda name: "/usr/bin/trtexec")
    assert find_trtexec() == "/usr/bin/trtexec"


def test_find_trtexec_falls_back_to_jetpack(monkeypatch):
    monkeypatch.setattr(trtexec_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(trtexec_module.os.path, "isfile", lambda path: path == JETSON_TRTEXEC)
    assert find_trtexec() == JETSON_TRTEXEC
    monkeypatch.setattr(trtexec_module.os.path, "isfile", lambda path: False)
    assert find_trtexec() is None
