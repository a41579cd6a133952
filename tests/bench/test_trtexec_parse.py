# ruff: noqa: E501, W291  (trtexec log lines are pasted verbatim: long, some with a trailing space)
"""Reading trtexec logs and --exportTimes JSON (no TensorRT needed).

The logs are real trtexec output quoted in ../shared/TENSORRT.md §4 and §9, pasted verbatim with
the sources named; where a test needs a whole run, the verbatim lines are assembled and what was
added is said.
"""

from __future__ import annotations

import json

import pytest

from trtq.bench.trtexec_parse import (
    TrtexecReport,
    parse_export_times,
    parse_trtexec_log,
    to_bench_record,
)
from trtq.engines.versions import TrtVersion
from trtq.errors import BackendError

# TRT 10.x, NVIDIA/TensorRT#4177 (lix19937, 2024-10-03), as in TENSORRT.md §4.
TRT10_4177 = """\
[10/03/2024-10:47:59] [I] === Performance summary ===
[10/03/2024-10:47:59] [I] Throughput: 130.298 qps
[10/03/2024-10:47:59] [I] Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = 7.16092 ms, percentile(90%) = 10.2996 ms, percentile(95%) = 10.8698 ms, percentile(99%) = 12.9675 ms
[10/03/2024-10:47:59] [I] Enqueue Time: min = 2.72876 ms, max = 15.0201 ms, mean = 7.63062 ms, median = 7.86694 ms, percentile(90%) = 10.1792 ms, percentile(95%) = 11.7217 ms, percentile(99%) = 14.1848 ms
[10/03/2024-10:47:59] [I] H2D Latency: min = 0.0065918 ms, max = 0.0698242 ms, mean = 0.0122212 ms, median = 0.00814819 ms, percentile(90%) = 0.0253906 ms, percentile(95%) = 0.0270996 ms, percentile(99%) = 0.0515137 ms
[10/03/2024-10:47:59] [I] GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, median = 7.14139 ms, percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, percentile(99%) = 12.9485 ms
[10/03/2024-10:47:59] [I] D2H Latency: min = 0.00390625 ms, max = 0.110596 ms, mean = 0.0100141 ms, median = 0.00439453 ms, percentile(90%) = 0.0254517 ms, percentile(95%) = 0.0319824 ms, percentile(99%) = 0.0994873 ms
[10/03/2024-10:47:59] [I] Total Host Walltime: 3.00082 s
[10/03/2024-10:47:59] [I] Total GPU Compute Time: 2.96536 s
"""

# Xavier AGX, TRT 8.4, OE4T/meta-tegra PR #952 (the §4 excerpt is its Latency and GPU Compute lines).
XAVIER_84 = """\
[03/11/2022-14:57:03] [I] === Performance summary ===
[03/11/2022-14:57:03] [I] Throughput: 41087.7 qps
[03/11/2022-14:57:03] [I] Latency: min = 0.387207 ms, max = 0.447357 ms, mean = 0.402238 ms, median = 0.401947 ms, percentile(99%) = 0.420288 ms
[03/11/2022-14:57:03] [I] Enqueue Time: min = 0.0830078 ms, max = 0.229004 ms, mean = 0.090497 ms, median = 0.0871582 ms, percentile(99%) = 0.126099 ms
[03/11/2022-14:57:03] [I] H2D Latency: min = 0.00622559 ms, max = 0.0571899 ms, mean = 0.0104126 ms, median = 0.00952148 ms, percentile(99%) = 0.0272217 ms
[03/11/2022-14:57:03] [I] GPU Compute Time: min = 0.375977 ms, max = 0.403564 ms, mean = 0.388221 ms, median = 0.388443 ms, percentile(99%) = 0.393188 ms
[03/11/2022-14:57:03] [I] D2H Latency: min = 0.00195312 ms, max = 0.00537109 ms, mean = 0.00360451 ms, median = 0.00366211 ms, percentile(99%) = 0.00488281 ms
[03/11/2022-14:57:03] [I] Total Host Walltime: 3.00119 s
[03/11/2022-14:57:03] [I] Total GPU Compute Time: 2.99202 s
[03/11/2022-14:57:03] [I] Explanations of the performance metrics are printed in the verbose logs.
[03/11/2022-14:57:03] [I] 
&&&& PASSED TensorRT.trtexec [TensorRT v8400] # trtexec --loadEngine=mnist16.trt --batch=16
"""

# --noDataTransfers run, WongKinYiu/yolov7 PR #329 (cited in §4): H2D/D2H print zeros.
NO_DATA_TRANSFERS = """\
[07/28/2022-16:00:55] [I] === Performance summary ===
[07/28/2022-16:00:55] [I] Throughput: 716.632 qps
[07/28/2022-16:00:55] [I] Latency: min = 1.3476 ms, max = 1.5657 ms, mean = 1.38629 ms, median = 1.38037 ms, percentile(99%) = 1.55853 ms
[07/28/2022-16:00:55] [I] Enqueue Time: min = 0.0109863 ms, max = 0.0975342 ms, mean = 0.022185 ms, median = 0.0200195 ms, percentile(99%) = 0.071167 ms
[07/28/2022-16:00:55] [I] H2D Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(99%) = 0 ms
[07/28/2022-16:00:55] [I] GPU Compute Time: min = 1.3476 ms, max = 1.5657 ms, mean = 1.38629 ms, median = 1.38037 ms, percentile(99%) = 1.55853 ms
[07/28/2022-16:00:55] [I] D2H Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(99%) = 0 ms
[07/28/2022-16:00:55] [I] Total Host Walltime: 3.00294 s
[07/28/2022-16:00:55] [I] Total GPU Compute Time: 2.9833 s
[07/28/2022-16:00:55] [W] * GPU compute time is unstable, with coefficient of variance = 2.10486%.
[07/28/2022-16:00:55] [W]   If not already in use, locking GPU clock frequency or adding --useSpinWait may improve the stability.
[07/28/2022-16:00:55] [I] Explanations of the performance metrics are printed in the verbose logs.
[07/28/2022-16:00:55] [V] 
[07/28/2022-16:00:55] [V] === Explanations of the performance metrics ===
"""

# The device block of §9 (AGX Orin 64GB, TRT 10.7, NVIDIA/TensorRT#4426), timestamps added.
DEVICE_ORIN_AGX = """\
[01/10/2025-10:00:00] [I] === Device Information ===
[01/10/2025-10:00:00] [I] Selected Device: Orin
[01/10/2025-10:00:00] [I] Compute Capability: 8.7
[01/10/2025-10:00:00] [I] SMs: 16
[01/10/2025-10:00:00] [I] Device Global Memory: 62840 MiB
[01/10/2025-10:00:00] [I] Memory Bus Width: 256 bits (ECC disabled)
[01/10/2025-10:00:00] [I] Application Compute Clock Rate: 1.3 GHz
[01/10/2025-10:00:00] [I] 
[01/10/2025-10:00:00] [I] Note: The application clock rates do not reflect the actual clock rates that the GPU is currently running at.
"""

# Orin NX, TRT 10.16, OE4T/meta-tegra PR #2243 (verbatim; the log's banner was not quoted).
DEVICE_ORIN_NX = """\
[01/01/1970-03:47:30] [I] 
[01/01/1970-03:47:30] [I] === Device Information ===
[01/01/1970-03:47:30] [I] Available Devices: 
[01/01/1970-03:47:30] [I]   Device 0: "Orin" UUID: GPU-f5507ee1-b6b1-556b-8350-83af993dbffd
[01/01/1970-03:47:30] [I] Selected Device: Orin
[01/01/1970-03:47:30] [I] Selected Device ID: 0
[01/01/1970-03:47:30] [I] Selected Device UUID: GPU-f5507ee1-b6b1-556b-8350-83af993dbffd
[01/01/1970-03:47:30] [I] Compute Capability: 8.7
[01/01/1970-03:47:30] [I] SMs: 8
[01/01/1970-03:47:30] [I] Device Global Memory: 15536 MiB
[01/01/1970-03:47:30] [I] Shared Memory per SM: 164 KiB
[01/01/1970-03:47:30] [I] Memory Bus Width: 256 bits (ECC disabled)
[01/01/1970-03:47:30] [I] Application Compute Clock Rate: 1.173 GHz
[01/01/1970-03:47:30] [I] Application Memory Clock Rate: 0.408 GHz
[01/01/1970-03:47:30] [I] 
[01/01/1970-03:47:30] [I] Note: The application clock rates do not reflect the actual clock rates that the GPU is currently running at.
[01/01/1970-03:47:30] [I] 
[01/01/1970-03:47:30] [I] TensorRT version: 10.16.2
[01/01/1970-03:47:30] [I] Loading standard plugins
"""

# The warnings printEpilog can print (sampleReporting.cpp @v10.3.0), as a real TRT 10 log
# shows them; the H2D-bound pair is the source's text with the same prefix.
WARNINGS = """\
[09/07/2024-21:04:10] [W] * Throughput may be bound by Enqueue Time rather than GPU Compute and the GPU may be under-utilized.
[09/07/2024-21:04:10] [W]   If not already in use, --useCudaGraph (utilize CUDA graphs where possible) may increase the throughput.
[09/07/2024-21:04:10] [W] * Throughput may be bound by host-to-device transfers for the inputs rather than GPU Compute and the GPU may be under-utilized.
[09/07/2024-21:04:10] [W]   Add --noDataTransfers flag to disable data transfers.
[09/07/2024-21:04:10] [W] * GPU compute time is unstable, with coefficient of variance = 31.6956%.
[09/07/2024-21:04:10] [W]   If not already in use, locking GPU clock frequency or adding --useSpinWait may improve the stability.
[09/07/2024-21:04:10] [I] Explanations of the performance metrics are printed in the verbose logs.
"""

# TRT 8.0.1 (DeepStream YOLO log): 8.x also prints End-to-End Host Latency.
TRT801 = """\
[04/14/2026-01:43:16] [I] === Performance summary ===
[04/14/2026-01:43:16] [I] Throughput: 24.5583 qps
[04/14/2026-01:43:16] [I] Latency: min = 40.5005 ms, max = 40.8591 ms, mean = 40.6326 ms, median = 40.6337 ms, percentile(99%) = 40.8591 ms
[04/14/2026-01:43:16] [I] End-to-End Host Latency: min = 40.5388 ms, max = 40.9277 ms, mean = 40.6771 ms, median = 40.6718 ms, percentile(99%) = 40.9277 ms
[04/14/2026-01:43:16] [I] Enqueue Time: min = 40.2849 ms, max = 40.6204 ms, mean = 40.4274 ms, median = 40.4176 ms, percentile(99%) = 40.6204 ms
[04/14/2026-01:43:16] [I] H2D Latency: min = 0.487671 ms, max = 0.590698 ms, mean = 0.544677 ms, median = 0.543213 ms, percentile(99%) = 0.590698 ms
[04/14/2026-01:43:16] [I] GPU Compute Time: min = 39.8569 ms, max = 40.1931 ms, mean = 40.0027 ms, median = 39.9982 ms, percentile(99%) = 40.1931 ms
[04/14/2026-01:43:16] [I] D2H Latency: min = 0.0678711 ms, max = 0.150146 ms, mean = 0.0852185 ms, median = 0.079834 ms, percentile(99%) = 0.150146 ms
[04/14/2026-01:43:16] [I] Total Host Walltime: 4.07195 s
[04/14/2026-01:43:16] [I] Total GPU Compute Time: 4.00027 s
[04/14/2026-01:43:16] [W] * Throughput may be bound by Enqueue Time rather than GPU Compute and the GPU may be under-utilized.
[04/14/2026-01:43:16] [W]   If not already in use, --useCudaGraph (utilize CUDA graphs where possible) may increase the throughput.
[04/14/2026-01:43:16] [I] Explanations of the performance metrics are printed in the verbose logs.
[04/14/2026-01:43:16] [I]
&&&& PASSED TensorRT.trtexec [TensorRT v8001] # /usr/src/tensorrt/bin/trtexec --loadEngine=/root/deepstream_yolo/best_deepstream.onnx_b1_gpu0_fp16.engine --batch=1 --iterations=100 --warmUp=50 --fp16 --exportTimes=times.json --exportProfile=profile.json
"""

# Pre-8.x multi-line summary, NVIDIA/TensorRT#2054 (cited in §4).
LEGACY_2054 = """\
[06/12/2022-22:34:00] [I] Average on 10 runs - GPU latency: 1.5605 ms - Host latency: 1.65498 ms (end to end 3.01636 ms, enqueue 0.935498 ms)
[06/12/2022-22:34:00] [I] Host Latency
[06/12/2022-22:34:00] [I] min: 1.64058 ms (end to end 1.66368 ms)
[06/12/2022-22:34:00] [I] max: 6.2915 ms (end to end 7.65552 ms)
[06/12/2022-22:34:00] [I] mean: 1.66069 ms (end to end 3.00909 ms)
[06/12/2022-22:34:00] [I] median: 1.65601 ms (end to end 3.01636 ms)
[06/12/2022-22:34:00] [I] percentile: 1.67065 ms at 99% (end to end 3.03931 ms at 99%)
[06/12/2022-22:34:00] [I] throughput: 0 qps
[06/12/2022-22:34:00] [I] walltime: 3.00461 s
"""

# A failed build: the [E] lines are verbatim (a 2022 TRT 8.x log); the banners are added.
FAILED_BUILD = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v8401] # trtexec --onnx=model.onnx --shapes=input:1x3x640x640
[10/14/2022-15:13:21] [W] [TRT] onnx2trt_utils.cpp:369: Your ONNX model has been generated with INT64 weights, while TensorRT does not natively support INT64. Attempting to cast down to INT32.
[10/14/2022-15:13:21] [E] Static model does not take explicit shapes since the shape of inference tensors will be determined by the model itself
[10/14/2022-15:13:21] [E] Network And Config setup failed
[10/14/2022-15:13:21] [E] Building engine failed
[10/14/2022-15:13:21] [E] Failed to create engine from model or file.
[10/14/2022-15:13:21] [E] Engine set up failed
&&&& FAILED TensorRT.trtexec [TensorRT v8401] # trtexec --onnx=model.onnx --shapes=input:1x3x640x640
"""

# A build-only run (constructed in trtexec's format): no performance summary.
BUILD_ONLY = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=encoder.onnx --saveEngine=encoder.engine --fp16 --skipInference
[04/21/2025-16:34:20] [I] === Model Options ===
[04/21/2025-16:34:20] [I] Format: ONNX
[04/21/2025-16:34:20] [I] Engine built in 61.2 sec.
[04/21/2025-16:34:20] [I] Skipped inference phase since --skipInference is added.
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=encoder.onnx --saveEngine=encoder.engine --fp16 --skipInference
"""

BANNER_10 = "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # /usr/src/tensorrt/bin/trtexec --loadEngine=toddlerbot/depth/foundation_stereo_vits.engine --useCudaGraph\n"
PASSED_10 = "&&&& PASSED TensorRT.trtexec [TensorRT v100300] # /usr/src/tensorrt/bin/trtexec --loadEngine=toddlerbot/depth/foundation_stereo_vits.engine --useCudaGraph\n"


def test_trt10_summary_default_percentiles():
    report = parse_trtexec_log(TRT10_4177)
    s = report.summary
    assert s.throughput_qps == 130.298
    assert s.gpu_compute.median == 7.14139 and s.gpu_compute.percentiles == {
        90: 10.2881, 95: 10.8175, 99: 12.9485}
    assert (s.gpu_compute.min, s.gpu_compute.max, s.gpu_compute.mean) == (5.34595, 13.3388, 7.58404)
    assert s.latency.median == 7.16092 and s.latency.percentile(99) == 12.9675
    assert s.enqueue.max == 15.0201 and s.enqueue.percentile(95) == 11.7217
    assert s.h2d.min == 0.0065918 and s.h2d.median == 0.00814819
    assert s.d2h.min == 0.00390625 and s.d2h.percentile(99) == 0.0994873
    assert (s.total_host_walltime_s, s.total_gpu_compute_time_s) == (3.00082, 2.96536)
    assert report.status is None and report.tensorrt_version is None  # no banner in the excerpt
    assert report.warnings == () and not report.no_data_transfers


def test_xavier_single_percentile_and_bench_record():
    report = parse_trtexec_log(XAVIER_84)
    s = report.summary
    assert s.throughput_qps == 41087.7
    assert s.gpu_compute.median == 0.388443 and s.gpu_compute.percentiles == {99: 0.393188}
    assert s.latency.percentiles == {99: 0.420288} and s.latency.mean == 0.402238
    assert s.d2h.max == 0.00537109
    assert report.status == "PASSED" and report.passed
    assert report.tensorrt_version == "8.4.0"
    assert report.command == "trtexec --loadEngine=mnist16.trt --batch=16"
    record = to_bench_record(report)
    assert record["latency_ms"] == {"median": 0.388443, "p90": None, "p95": None,
                                    "p99": 0.393188, "min": 0.375977, "max": 0.403564,
                                    "mean": 0.388221}
    assert record["host_latency_ms"]["median"] == 0.401947
    assert record["fps"] == 41087.7 and record["backend"] == "trtexec"
    assert record["tensorrt_version"] == "8.4.0" and record["device"] is None


def test_section4_xavier_excerpt_alone():
    lines = XAVIER_84.splitlines()
    excerpt = "\n".join(lines[i] for i in (0, 1, 2, 5))  # exactly the four lines of §4
    assert excerpt.count("\n") == 3 and "GPU Compute Time" in lines[5]
    report = parse_trtexec_log(excerpt)
    assert set(report.summary.metrics) == {"Latency", "GPU Compute Time"}
    assert report.summary.gpu_compute.median == 0.388443
    assert report.summary.throughput_qps == 41087.7
    assert report.summary.total_host_walltime_s is None and not report.no_data_transfers


def test_no_data_transfers_zero_lines_and_warning():
    report = parse_trtexec_log(NO_DATA_TRANSFERS)
    assert report.no_data_transfers
    assert report.summary.h2d.all_zero and report.summary.d2h.percentile(99) == 0
    assert report.summary.gpu_compute.median == 1.38037
    assert report.gpu_compute_cv_percent == 2.10486
    assert report.warnings == (
        "GPU compute time is unstable, with coefficient of variance = 2.10486%. If not already "
        "in use, locking GPU clock frequency or adding --useSpinWait may improve the stability.",)
    assert to_bench_record(report)["no_data_transfers"] is True
    assert not parse_trtexec_log(TRT10_4177).no_data_transfers


@pytest.mark.parametrize(("banner", "version"), [
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=data/resnet18_image_encoder.onnx", "10.3.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=data/mobile_sam_mask_decoder.onnx", "8.6.1"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec --onnx=data/resnet18_image_encoder.onnx", "8.2.1"),
    ("&&&& PASSED TensorRT.trtexec [TensorRT v8400] # trtexec --loadEngine=mnist16.trt --batch=16", "8.4.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v101100] # trtexec --loadEngine=a.engine", "10.11.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v12345] # trtexec", "v12345"),  # unknown layout: kept
])
def test_version_banners(banner, version):
    report = parse_trtexec_log(banner + "\n")
    assert report.tensorrt_version == version and report.summary is None
    assert report.status == ("PASSED" if "PASSED" in banner else None)


def test_version_object_and_refusal_of_old_releases():
    assert parse_trtexec_log(BANNER_10).version() == TrtVersion(10, 3, 0)
    assert parse_trtexec_log("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # x").version() \
        == TrtVersion(8, 6, 1)
    with pytest.raises(BackendError, match="older than 8.5"):
        parse_trtexec_log("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # x").version()
    with pytest.raises(BackendError, match="RUNNING TensorRT.trtexec"):
        parse_trtexec_log(TRT10_4177).version()


def test_device_block_section9():
    report = parse_trtexec_log(BANNER_10 + DEVICE_ORIN_AGX + TRT10_4177 + PASSED_10)
    d = report.device
    assert (d.name, d.compute_capability, d.sms, d.global_memory_mib) == ("Orin", "8.7", 16, 62840)
    assert d.memory_bus_width_bits == 256 and d.compute_clock_ghz == 1.3
    assert d.memory_clock_ghz is None and "Note" not in d.fields
    assert report.status == "PASSED" and report.tensorrt_version == "10.3.0"
    assert report.command.endswith("--loadEngine=toddlerbot/depth/foundation_stereo_vits.engine "
                                   "--useCudaGraph")
    record = to_bench_record(report)
    assert record["device"] == "Orin" and record["latency_ms"]["p99"] == 12.9485
    assert record["latency_ms"]["median"] == 7.14139 and record["fps"] == 130.298
    assert record["host_latency_ms"]["p90"] == 10.2996


def test_device_block_orin_nx_and_version_line():
    report = parse_trtexec_log(DEVICE_ORIN_NX)
    d = report.device
    assert (d.name, d.sms, d.global_memory_mib) == ("Orin", 8, 15536)
    assert (d.compute_clock_ghz, d.memory_clock_ghz) == (1.173, 0.408)
    assert d.fields["Selected Device UUID"] == "GPU-f5507ee1-b6b1-556b-8350-83af993dbffd"
    assert not any(key.strip().startswith("Device 0") for key in d.fields)
    assert report.tensorrt_version == "10.16.2"  # from 'TensorRT version:' when no banner
    assert report.summary is None and report.status is None


def test_trailing_warnings_and_coefficient_of_variance():
    report = parse_trtexec_log(TRT10_4177 + WARNINGS)
    starts = ("Throughput may be bound by Enqueue Time rather than GPU Compute",
              "Throughput may be bound by host-to-device transfers for the inputs",
              "GPU compute time is unstable, with coefficient of variance = 31.6956%. If not")
    assert len(report.warnings) == 3
    assert all(w.startswith(s) for w, s in zip(report.warnings, starts, strict=True))
    assert report.warnings[0].endswith("--useCudaGraph (utilize CUDA graphs where possible) "
                                       "may increase the throughput.")
    assert report.warnings[1].endswith("Add --noDataTransfers flag to disable data transfers.")
    assert report.gpu_compute_cv_percent == 31.6956
    assert to_bench_record(report)["warnings"] == list(report.warnings)


def test_builder_warnings_before_the_summary_are_not_summary_warnings():
    report = parse_trtexec_log(FAILED_BUILD.replace("&&&& FAILED", "&&&& PASSED")
                               .replace("[E]", "[I]") + XAVIER_84)
    assert report.warnings == ()


def test_trt801_end_to_end_host_latency():
    report = parse_trtexec_log(TRT801)
    e2e = report.summary.metrics["End-to-End Host Latency"]
    assert e2e.median == 40.6718 and e2e.percentiles == {99: 40.9277}
    assert report.summary.gpu_compute.median == 39.9982
    assert report.tensorrt_version == "8.0.1" and report.passed
    assert report.warnings[0].startswith("Throughput may be bound by Enqueue Time")


def test_custom_percentiles_and_scientific_numbers():
    text = ("[01/01/2025-00:00:00] [I] === Performance summary ===\n"
            "[01/01/2025-00:00:00] [I] Throughput: 1.5e+03 qps\n"
            "[01/01/2025-00:00:00] [I] GPU Compute Time: min = 1.2e-05 ms, max = 0.5 ms, "
            "mean = 0.25 ms, median = 0.24 ms, percentile(50%) = 0.24 ms, "
            "percentile(99.9%) = 0.49 ms\n"
            "[01/01/2025-00:00:00] [I] Total Host Walltime: 3 s\n")
    report = parse_trtexec_log(text)
    stats = report.summary.gpu_compute
    assert stats.min == 1.2e-05 and stats.percentiles == {50: 0.24, 99.9: 0.49}
    assert stats.percentile(99.9) == 0.49 and stats.percentile(99) is None
    assert report.summary.throughput_qps == 1500.0 and report.summary.total_host_walltime_s == 3
    record = to_bench_record(report)["latency_ms"]
    assert record["p50"] == 0.24 and record["p99.9"] == 0.49 and record["p99"] is None
    assert to_bench_record(report)["host_latency_ms"] is None


def test_prefix_without_timestamp_and_crlf():
    text = TRT10_4177.replace("[10/03/2024-10:47:59] ", "").replace("\n", "\r\n")
    assert parse_trtexec_log(text).summary.gpu_compute.percentile(99) == 12.9485


def test_pre_8x_format_is_refused():
    with pytest.raises(BackendError, match=r"TensorRT 7\.x.*8\.5 or newer"):
        parse_trtexec_log(LEGACY_2054)


def test_failed_build_report_and_require_summary():
    report = parse_trtexec_log(FAILED_BUILD)
    assert report.status == "FAILED" and not report.passed and report.summary is None
    assert report.tensorrt_version == "8.4.1" and report.errors[-1] == "Engine set up failed"
    assert len(report.errors) == 5 and report.errors[0].startswith("Static model does not take")
    with pytest.raises(BackendError, match="the run failed.*Engine set up failed"):
        report.require_summary()
    with pytest.raises(BackendError, match="no performance summary"):
        to_bench_record(report)


def test_build_only_log():
    report = parse_trtexec_log(BUILD_ONLY)
    assert report.status == "PASSED" and report.summary is None and report.errors == ()
    assert report.tensorrt_version == "10.3.0" and report.command.endswith("--skipInference")
    with pytest.raises(BackendError, match="skipInference.*no \\[E\\] lines"):
        report.require_summary()
    assert parse_trtexec_log("").summary is None


def test_malformed_or_incomplete_summary_raises():
    header = "[10/03/2024-10:47:59] [I] === Performance summary ===\n"
    with pytest.raises(BackendError, match="incomplete"):
        parse_trtexec_log(header + "[10/03/2024-10:47:59] [I] Throughput: 130.298 qps\n")
    with pytest.raises(BackendError, match="cannot read the trtexec metric line"):
        parse_trtexec_log(header + "[10/03/2024-10:47:59] [I] Throughput: 1 qps\n"
                          "[10/03/2024-10:47:59] [I] GPU Compute Time: min = 1 ms, max = 2 ms\n")


def test_to_dict_is_json_and_keeps_the_log_out():
    report = parse_trtexec_log(BANNER_10 + DEVICE_ORIN_AGX + TRT10_4177 + WARNINGS + PASSED_10)
    data = json.loads(json.dumps(report.to_dict()))
    gpu = data["summary"]["metrics"]["GPU Compute Time"]
    assert gpu["median"] == 7.14139 and gpu["percentiles"] == {"90": 10.2881, "95": 10.8175,
                                                                 "99": 12.9485}
    assert data["device"]["sms"] == 16 and data["status"] == "PASSED"
    assert data["gpu_compute_cv_percent"] == 31.6956 and "log_text" not in data
    assert report.log_text.startswith("&&&& RUNNING") and "log_text" not in repr(report)
    assert isinstance(report, TrtexecReport)


def _export_json(records: list[dict]) -> str:
    """--exportTimes text laid out as exportJSONTrace writes it (sampleReporting.cpp)."""
    body = "".join(("  " if i == 0 else ", ") + "{ " + ", ".join(
        f'"{k}" : {v}' for k, v in r.items()) + " }\n" for i, r in enumerate(records))
    return "[\n" + body + "]\n"


def _record(start: float, compute: float, h2d: float = 0.0, d2h: float = 0.0) -> dict:
    return {"startEnqMs": start, "endEnqMs": start + 0.25, "startH2dMs": start,
            "endH2dMs": start + h2d, "startComputeMs": start + h2d,
            "endComputeMs": start + h2d + compute, "startD2hMs": start + h2d + compute,
            "endD2hMs": start + h2d + compute + d2h, "h2dMs": h2d, "computeMs": compute,
            "d2hMs": d2h, "latencyMs": h2d + compute + d2h}


def test_export_times_arrays_and_stats(tmp_path):
    computes = [7.0, 7.5, 8.0, 12.0]
    records = [_record(200 + 10 * i, c, h2d=0.01, d2h=0.005) for i, c in enumerate(computes)]
    text = _export_json(records)
    out = parse_export_times(text)
    assert out["iterations"] == 4 and out["per_iteration"]["compute_ms"] == computes
    assert out["per_iteration"]["enqueue_ms"] == [0.25] * 4
    assert out["per_iteration"]["h2d_ms"] == [0.01] * 4 and "end_to_end_ms" not in \
        out["per_iteration"]
    assert out["compute_ms"]["median"] == 7.75 and out["compute_ms"]["max"] == 12.0
    assert out["compute_ms"]["p90"] == pytest.approx(10.8)
    assert out["latency_ms"]["median"] == pytest.approx(7.765)
    path = tmp_path / "times.json"
    path.write_text(text)
    assert parse_export_times(path)["compute_ms"] == out["compute_ms"]
    assert parse_export_times(json.loads(text))["iterations"] == 4


def test_export_times_older_format_with_warmups():
    records = [dict(_record(10.0 * i, c), endToEndMs=c + 1) for i, c in
               enumerate([50.0, 9.0, 8.0, 7.0])]  # first one a warm-up (starts before 5 ms)
    out = parse_export_times(_export_json(records), warmup_ms=5)
    assert out["iterations"] == 3 and out["per_iteration"]["end_to_end_ms"] == [10.0, 9.0, 8.0]
    assert out["compute_ms"]["median"] == 8.0
    assert parse_export_times(_export_json(records))["compute_ms"]["max"] == 50.0


def test_export_times_rejects_other_json():
    profile = '[\n  { "count" : 10 }\n, { "name" : "conv1", "timeMs" : 1.5, "averageMs" : 0.15, "medianMs" : 0.15, "percentage" : 12.5 }\n]\n'
    with pytest.raises(BackendError, match="usable iterations"):
        parse_export_times(profile)
    with pytest.raises(BackendError, match="not JSON"):
        parse_export_times("[{")
    with pytest.raises(BackendError, match="list of per-iteration"):
        parse_export_times('{"computeMs": 1}')
    with pytest.raises(BackendError, match="usable iterations"):
        parse_export_times("[]")
