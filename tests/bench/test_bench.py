"""Latency statistics and the onnxruntime runner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trtq.bench.latency import summarize, time_calls
from trtq.bench.onnxruntime_bench import bench_onnx, parse_shapes
from trtq.bench.report import bench_markdown
from trtq.cli import main
from trtq.errors import TrtqError


def test_summarize_known_samples():
    stats = summarize(list(range(1, 101)))  # 1..100 ms
    assert stats["median"] == 50.5 and stats["min"] == 1 and stats["max"] == 100
    assert stats["p90"] == pytest.approx(90.1) and stats["p99"] == pytest.approx(99.01)
    assert stats["count"] == 100
    with pytest.raises(ValueError):
        summarize([])


def test_time_calls_counts_warmup_separately():
    calls = []
    samples = time_calls(lambda: calls.append(1), iterations=7, warmup=3)
    assert len(samples) == 7 and len(calls) == 10 and all(s >= 0 for s in samples)


def test_parse_shapes():
    assert parse_shapes(["boxes:4x4", "image:1x3x64x64"]) == {"boxes": (4, 4),
                                                            "image": (1, 3, 64, 64)}
    for bad in ("boxes", "boxes:4xA", "boxes:0x4", ":4"):
        with pytest.raises(TrtqError, match="bad --shape"):
            parse_shapes([bad])


def test_bench_decoder_with_dynamic_boxes(tiny_onnx):
    record = bench_onnx(tiny_onnx / "decoder.onnx", iterations=5, warmup=1,
                        shapes={"boxes": (3, 4)}, threads=1)
    assert record["input_shapes"] == {"image_embeddings": [1, 32, 16, 16], "boxes": [3, 4]}
    lat = record["latency_ms"]
    assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert record["fps"] == pytest.approx(1000 / lat["median"])
    assert record["threads"] == 1 and record["peak_rss_mib"] > 50
    # the tiny session may fit in memory the process had already freed: only bounds here
    assert isinstance(record["rss_delta_mib"], float)
    assert abs(record["rss_delta_mib"]) < record["peak_rss_mib"]
    assert len(record["samples_ms"]) == 5
    assert "| decoder.onnx | onnxruntime |" in bench_markdown([record])


def test_rss_delta_counts_the_session_weights(tmp_path):
    """A 64 MiB weight is mapped fresh (above glibc's mmap threshold), so RSS must grow by it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((4096, 4096)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4096])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "big.onnx")
    del weight, model, graph
    record = bench_onnx(tmp_path / "big.onnx", iterations=2, warmup=1, threads=1)
    assert record["rss_delta_mib"] > 48, record["rss_delta_mib"]


def test_unknown_shape_name(tiny_onnx):
    with pytest.raises(TrtqError, match="unknown inputs"):
        bench_onnx(tiny_onnx / "decoder.onnx", iterations=1, warmup=0, shapes={"box": (1, 4)})


def test_bench_cli_writes_json_and_markdown(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "enc.json"
    argv = ["bench", "--onnx", str(tiny_onnx / "encoder.onnx"), "--iterations", "3",
            "--warmup", "1", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["iterations"] == 3 and np.isfinite(record["latency_ms"]["p99"])
    assert (tmp_path / "enc.md").read_text().startswith("| model | backend |")
    assert "encoder.onnx" in capsys.readouterr().out
    assert main(argv) == 2  # refuses to overwrite
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
