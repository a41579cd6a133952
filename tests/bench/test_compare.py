"""Comparison of bench records: labels, baseline, speedup, accuracy deltas, Markdown, plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trtq.bench.compare import (
    Entry,
    compare,
    compare_markdown,
    load_entries,
    write_comparison,
)
from trtq.bench.plots import DPI, HEIGHT_IN, latency_plot, pipeline_plot, speed_accuracy_plot
from trtq.errors import ArtifactError, DataError, TrtqError

ORIN = "Jetson Orin Nano 8GB (MAXN, 6 cores, aarch64)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record(median: float, precision: str | None = "fp16", backend: str = "tensorrt",
           device: str = ORIN, samples: bool = True, **extra) -> dict:
    """A realistic bench record: lognormal-ish samples around `median`, stats computed from them."""
    rng = np.random.default_rng(int(median * 100))
    data = median * np.exp(rng.normal(0.0, 0.05, 200))
    data *= median / np.median(data)  # exact median
    lat = {"median": float(np.median(data)), "p90": float(np.percentile(data, 90)),
           "p95": float(np.percentile(data, 95)), "p99": float(np.percentile(data, 99)),
           "min": float(data.min()), "max": float(data.max()), "mean": float(data.mean()),
           "count": 200}
    rec = {"backend": backend, "device": device,
           "model_file": f"engines/encoder.{precision}.engine", "latency_ms": lat,
           "fps": 1000.0 / lat["median"], "peak_rss_mib": 812.0,
           "tensorrt_version": "10.3.0"}
    if precision:
        rec["precision"] = precision
    if samples:
        rec["samples_ms"] = data.tolist()
    return rec | extra


def dump(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def three(tmp_path) -> dict[str, Path]:
    """FP32, FP16 and INT8 TensorRT records of the same encoder on one Orin, with mIoU files."""
    power = {"power_mw_mean": 7200.0, "power_mw_peak": 9800.0, "energy_per_inference_mj": 29.5}
    paths = {
        "fp32": dump(tmp_path, "fp32.json", record(20.0, "fp32",
                                                   memory={"engine_device_mib": 48.0})),
        "fp16": dump(tmp_path, "fp16.json", record(10.0, "fp16", power=power,
                                                   memory={"engine_device_mib": 24.0})),
        "int8": dump(tmp_path, "int8.json", record(4.0, "int8", samples=False,
                                                   power={"power_mw_mean": 6000.0})),
    }
    for name, miou in (("fp32", 0.8125), ("fp16", 0.8120), ("int8", 0.7920)):
        acc = {"miou": miou, "instances": 120, "images": 40, "per_instance": [{"iou": miou}]}
        if name == "int8":
            acc["agreement_miou"] = 0.9610
        dump(tmp_path, f"{name}-eval.json", acc)
    return paths


def load_three(tmp_path, three, **kw) -> list[Entry]:
    names = ("fp32", "fp16", "int8")
    return load_entries([three[n] for n in names],
                        [tmp_path / f"{n}-eval.json" for n in names], **kw)


def test_labels_come_from_flag_record_precision_or_file(tmp_path, three):
    entries = load_three(tmp_path, three)
    assert [e.label for e in entries] == ["fp32 tensorrt", "fp16 tensorrt", "int8 tensorrt"]
    assert entries[2].accuracy == {"miou": 0.7920, "agreement_miou": 0.9610}  # summary only
    entries = load_three(tmp_path, three, labels=("A", "B", "C"))
    assert [e.label for e in entries] == ["A", "B", "C"]
    named = dump(tmp_path, "named.json", record(5.0, label="orin int8 (ptq4sam)"))
    bare = dump(tmp_path, "ort_encoder.json", record(50.0, precision=None, backend="onnxruntime"))
    twin = dump(tmp_path, "fp16-again.json", record(11.0, "fp16"))
    labels = [e.label for e in load_entries([named, bare, three["fp16"], twin])]
    assert labels == ["orin int8 (ptq4sam)", "ort_encoder", "fp16 tensorrt (fp16)",
                      "fp16 tensorrt (fp16-again)"]


def test_bad_inputs_name_the_file(tmp_path, three):
    with pytest.raises(ArtifactError, match="missing.json does not exist"):
        load_entries([three["fp16"], tmp_path / "missing.json"])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ArtifactError, match="broken.json is not valid JSON"):
        load_entries([broken])
    with pytest.raises(DataError, match="fp16-eval.json has no latency_ms.median"):
        load_entries([tmp_path / "fp16-eval.json"])  # an accuracy file passed as a bench record
    with pytest.raises(DataError, match="fp16.json has none of miou"):
        load_entries([three["fp32"]], [three["fp16"]])  # a bench record passed as accuracy
    with pytest.raises(DataError, match="1 accuracy files .* for 2 bench records"):
        load_entries([three["fp32"], three["fp16"]], [tmp_path / "fp32-eval.json"])
    with pytest.raises(DataError, match="labels must be unique"):
        load_entries([three["fp32"], three["fp16"]], labels=("x", "x"))
    assert load_entries([three["fp32"], three["int8"]], ["-", tmp_path / "int8-eval.json"]
                        )[0].accuracy is None


def test_baseline_is_fp16_then_fp32_then_first(tmp_path, three):
    entries = load_three(tmp_path, three)
    assert compare(entries)["baseline"] == "fp16 tensorrt"
    assert compare([entries[2], entries[0]])["baseline"] == "fp32 tensorrt"
    assert compare([entries[2]])["baseline"] == "int8 tensorrt"
    assert compare(entries, baseline="int8 tensorrt")["baseline"] == "int8 tensorrt"
    with pytest.raises(DataError, match=r"no entry is labelled 'int4'.*'fp16 tensorrt'"):
        compare(entries, baseline="int4")


def test_speedup_memory_power_and_accuracy_deltas(tmp_path, three):
    result = compare(load_three(tmp_path, three))
    rows = {r["label"]: r for r in result["entries"]}
    fp32, fp16, int8 = rows["fp32 tensorrt"], rows["fp16 tensorrt"], rows["int8 tensorrt"]
    assert (fp32["speedup"], fp16["speedup"], int8["speedup"]) == pytest.approx((0.5, 1.0, 2.5))
    assert int8["median_ms"] == pytest.approx(4.0) and int8["fps"] == pytest.approx(250.0)
    assert fp32["p90_ms"] > fp32["median_ms"] and fp32["p99_ms"] >= fp32["p90_ms"]
    assert fp16["engine_device_mib"] == 24.0 and int8["engine_device_mib"] is None
    assert fp16["energy_per_inference_mj"] == 29.5 and not fp16["energy_derived"]
    # int8 has only mean power: energy = 6000 mW x mean latency (ms) / 1000
    mean_ms = json.loads(three["int8"].read_text())["latency_ms"]["mean"]
    assert int8["energy_per_inference_mj"] == pytest.approx(6.0 * mean_ms)
    assert int8["energy_derived"] and fp32["energy_per_inference_mj"] is None
    assert int8["accuracy_delta"] == pytest.approx({"miou": 0.7920 - 0.8120})  # no base agreement
    assert fp32["accuracy_delta"] == pytest.approx({"miou": 0.0005})
    assert fp16["accuracy_delta"] == {"miou": 0.0}
    assert result["accuracy_metrics"] == ["miou", "agreement_miou"]
    assert result["device"] == ORIN and result["devices"] == [ORIN]


def test_classify_accuracy_maps_agreement_to_top1(tmp_path, three):
    dump(tmp_path, "c32.json", {"top1": 0.71, "top5": 0.9, "agreement": None})
    dump(tmp_path, "c8.json", {"top1": 0.695, "top5": 0.89, "agreement": 0.97})
    entries = load_entries([three["fp32"], three["int8"]],
                           [tmp_path / "c32.json", tmp_path / "c8.json"])
    assert entries[1].accuracy == {"top1": 0.695, "agreement_top1": 0.97}
    rows = compare(entries)["entries"]
    assert rows[1]["accuracy_delta"] == pytest.approx({"top1": -0.015})


def test_mixed_devices_are_refused_unless_allowed(tmp_path, three):
    x86 = dump(tmp_path, "x86.json", record(1.5, "fp16", device="NVIDIA H100 80GB HBM3"))
    entries = load_entries([three["fp16"], x86])
    with pytest.raises(DataError) as err:
        compare(entries)
    assert ORIN in str(err.value) and "NVIDIA H100 80GB HBM3" in str(err.value)
    assert "--allow-mixed-devices" in str(err.value)
    assert isinstance(err.value, TrtqError)
    result = compare(entries, allow_mixed_devices=True)
    assert result["device"] is None and len(result["devices"]) == 2
    assert "devices differ" in compare_markdown(result)


def test_markdown_table_and_note(tmp_path, three):
    md = compare_markdown(compare(load_three(tmp_path, three)))
    lines = md.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:9] == ["entry", "backend", "precision", "median ms", "p90 ms", "p99 ms", "FPS",
                          "speedup", "peak RSS MiB"]
    assert {"engine MiB", "power W mean/peak", "mJ / inference", "mIoU",
            "agreement mIoU"} <= set(header)
    assert "GPU used MiB" not in header  # no record has it: no empty column
    assert len(lines[1].split("|")) == len(lines[0].split("|"))
    int8 = dict(zip(header, (c.strip() for c in lines[4].strip("|").split("|")), strict=True))
    assert int8["speedup"] == "2.50×" and int8["median ms"] == "4.00" and int8["FPS"] == "250.0"
    assert int8["mIoU"] == "0.7920 (-0.0200)" and int8["agreement mIoU"] == "0.9610"
    assert int8["engine MiB"] == "—" and int8["power W mean/peak"] == "6.00/—"
    assert int8["mJ / inference"].endswith("*")
    fp16 = dict(zip(header, (c.strip() for c in lines[3].strip("|").split("|")), strict=True))
    assert fp16["entry"] == "fp16 tensorrt (baseline)" and fp16["mIoU"] == "0.8120"
    assert fp16["power W mean/peak"] == "7.20/9.80" and fp16["agreement mIoU"] == "—"
    note = lines[-1]
    assert note.startswith("Baseline: fp16 tensorrt;") and f"device: {ORIN}" in note
    assert "mean power × mean latency" in note


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, read back with matplotlib."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    height, width = imread(path).shape[:2]
    return width, height


def test_write_comparison_files_and_no_overwrite(tmp_path, three):
    result = compare(load_three(tmp_path, three))
    out = tmp_path / "cmp" / "orin.json"
    paths = write_comparison(result, out, force=False)
    assert [p.name for p in paths] == ["orin.json", "orin.md", "orin.png",
                                       "orin-speed-accuracy.png"]
    saved = json.loads(out.read_text())
    assert saved["baseline"] == "fp16 tensorrt"
    assert [r["samples"] for r in saved["entries"]] == [200, 200, 0]
    assert all("samples_ms" not in r for r in saved["entries"])
    assert (tmp_path / "cmp" / "orin.md").read_text() == compare_markdown(result)
    assert png_size(paths[2]) == (round(max(6.0, 1.3 * 3 + 2) * DPI), round(HEIGHT_IN * DPI))
    assert png_size(paths[3]) == (700, 450)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(p.name for p in paths)

    before = {p: p.read_bytes() for p in paths}
    with pytest.raises(ArtifactError, match="orin.json already exists; pass --force"):
        write_comparison(result, out, force=False)
    paths[0].unlink()  # the JSON gone, the rest there: refused before anything is written
    with pytest.raises(ArtifactError, match="orin.md already exists; pass --force"):
        write_comparison(result, out, force=False)
    assert not paths[0].exists() and all(p.read_bytes() == before[p] for p in paths[1:])
    assert write_comparison(compare(load_three(tmp_path, three), baseline="fp32 tensorrt"),
                            out, force=True) == paths
    assert json.loads(out.read_text())["baseline"] == "fp32 tensorrt" and paths[3].exists()


def test_no_accuracy_no_speed_accuracy_plot(tmp_path, three):
    result = compare(load_entries([three["fp32"], three["int8"]]))
    paths = write_comparison(result, tmp_path / "lat.json", force=False)
    assert [p.name for p in paths] == ["lat.json", "lat.md", "lat.png"]
    assert not (tmp_path / "lat-speed-accuracy.png").exists()
    assert "mIoU" not in (tmp_path / "lat.md").read_text()
    with pytest.raises(DataError, match="no entry has accuracy"):
        speed_accuracy_plot(result, tmp_path / "sa.png")


def test_plots_draw_what_they_are_given(tmp_path, three):
    from matplotlib.figure import Figure

    entries = load_three(tmp_path, three)
    calls = []
    original = Figure.savefig
    # spy on the figure handed to savefig: boxes for records with samples, bars for the others
    Figure.savefig = lambda fig, *a, **k: (calls.append(fig), original(fig, *a, **k))[1]
    try:
        latency_plot(entries, tmp_path / "lat.png")
        speed_accuracy_plot(compare(entries), tmp_path / "sa.png")
    finally:
        Figure.savefig = original
    ax = calls[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [e.label for e in entries]
    kinds = sorted(type(p).__name__ for p in ax.patches)
    assert kinds == ["PathPatch", "PathPatch", "Rectangle"]  # two boxes (samples), one bar
    assert ax.get_ylabel() == "latency per inference (ms)" and ORIN in ax.get_title()
    sa = calls[1].axes[0]
    assert sa.get_ylabel() == "mIoU" and sa.get_xlabel().startswith("throughput (FPS")
    texts = sorted(t.get_text() for t in sa.texts)
    assert texts == ["fp16 tensorrt (baseline)", "fp32 tensorrt (0.50×)", "int8 tensorrt (2.50×)"]
    with pytest.raises(DataError):
        latency_plot([], tmp_path / "none.png")


def test_pipeline_plot_full_partial_and_flat(tmp_path):
    full = {"config": {"model": "litemedsam"},
            "bench": {"fp32": {"encoder": record(60.0, "fp32"), "decoder": record(3.0, "fp32")},
                      "int8": {"encoder": record(20.0, "int8"), "decoder": record(2.5, "int8")}},
            "accuracy": {"fp32": {"miou": 0.81}, "int8": {"miou": 0.79, "agreement_miou": 0.95}}}
    pipeline_plot(full, tmp_path / "full.png")
    assert png_size(tmp_path / "full.png") == (1100, 450)
    partial = {"bench": {"fp32": {"encoder": record(60.0, "fp32")},
                         "int8": {"decoder": record(2.5, "int8")}, "fp16": None},
               "accuracy": {"int8": {"instances": 0}}}  # no usable accuracy: one panel
    pipeline_plot(partial, tmp_path / "partial.png")
    assert png_size(tmp_path / "partial.png") == (700, 450)
    flat = {"bench": {"encoder": record(60.0, None, "onnxruntime"),
                      "decoder": record(3.0, None, "onnxruntime")}}  # today's `trtq run` report
    pipeline_plot(flat, tmp_path / "flat.png")
    assert png_size(tmp_path / "flat.png") == (700, 450)
    for empty in ({}, {"bench": {"fp32": {}}}, {"bench": {"int8": {"encoder": {"fps": 1}}}}):
        with pytest.raises(DataError, match="no bench records"):
            pipeline_plot(empty, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_real_onnxruntime_records(tiny_onnx, tmp_path):
    from trtq.bench.onnxruntime_bench import bench_onnx

    paths = []
    for threads in (1, 2):
        rec = bench_onnx(tiny_onnx / "decoder.onnx", iterations=8, warmup=1, threads=threads,
                         shapes={"boxes": (2, 4)})
        paths.append(dump(tmp_path, f"decoder-t{threads}.json", rec))
    entries = load_entries(paths)
    assert [e.label for e in entries] == ["decoder-t1", "decoder-t2"]  # no precision recorded
    result = compare(entries)
    assert result["baseline"] == "decoder-t1"  # neither FP16 nor FP32: the first
    medians = [e.record["latency_ms"]["median"] for e in entries]
    assert result["entries"][1]["speedup"] == pytest.approx(medians[0] / medians[1])
    assert result["device"] == entries[0].record["device"]
    written = write_comparison(result, tmp_path / "ort.json", force=False)
    assert len(written) == 3 and png_size(written[2])[1] == round(HEIGHT_IN * DPI)
    assert "| decoder-t2 | onnxruntime | — |" in written[1].read_text()


def test_importing_does_not_load_matplotlib():
    code = ("import sys, trtq.bench.compare, trtq.bench.plots\n"
            "print('matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
