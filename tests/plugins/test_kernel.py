"""The LogQuant CUDA kernel: nvcc builds it for trtq's SM list (CI has nvcc), its host-side
tables equal the Python quantizer's bit for bit, and on a GPU its output equals the PyTorch
reference exactly (FP32 and FP16)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from trtq.calib.logquant import levels, thresholds
from trtq.errors import BackendError
from trtq.plugins.kernel import DEFAULT_ARCHS, KernelLibrary, build_kernel_library, find_nvcc

SCALES = (1.0, 0.5, 0.277589649, 0.01, 3.7e-3, 0.9999, 1e-30, 123.4)


@pytest.fixture(scope="session")
def kernel_library(tmp_path_factory):
    if find_nvcc() is None:
        pytest.skip("nvcc is not installed here (the CUDA toolkit builds the kernel)")
    return build_kernel_library(tmp_path_factory.mktemp("kernel") / "liblogquant_kernel.so")


def test_nvcc_builds_every_sm_in_the_list(kernel_library):
    # Each cubin in the fat binary names its target (sm_XX); cuobjdump --list-elf shows the
    # same list where the full toolkit is installed.
    embedded = set(re.findall(rb"sm_(\d+)", kernel_library.read_bytes()))
    assert sorted(int(a) for a in embedded) == sorted(int(a) for a in DEFAULT_ARCHS)
    assert b"87" in embedded  # Jetson Orin


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("tau", (1, 2, 4))
def test_host_tables_equal_the_python_quantizer(kernel_library, bits, tau):
    lib = KernelLibrary(kernel_library)
    for scale in SCALES:
        scale = float(np.float32(scale))
        params = lib.params(bits, tau, scale)
        th, lv = thresholds(bits, tau, scale), levels(bits, tau, scale)
        usable = int(np.count_nonzero(th))
        k = np.arange(usable)
        # the kernel's reconstruction: a power-of-two multiple of one of tau base values
        th_kernel = np.ldexp(np.array(params.half_step, np.float32)[k % tau], -(k // tau))
        lv_kernel = np.ldexp(np.array(params.level, np.float32)[k % tau], -(k // tau))
        assert params.usable == usable and params.bits == bits and params.tau == tau
        np.testing.assert_array_equal(th_kernel.astype(np.float32), th[:usable])
        np.testing.assert_array_equal(lv_kernel.astype(np.float32), lv[:usable])
        assert not lv[usable:].any()  # codes from `usable` on decode to 0 in both


def test_invalid_parameters_are_refused(kernel_library):
    lib = KernelLibrary(kernel_library)
    for bits, tau, scale in ((1, 2, 1.0), (9, 2, 1.0), (8, 3, 1.0), (8, 2, 0.0),
                             (8, 2, float("inf")), (8, 2, -1.0)):
        with pytest.raises(BackendError, match="bits 2..8, tau 1/2/4"):
            lib.params(bits, tau, scale)


@pytest.mark.cuda
def test_kernel_equals_the_reference_on_a_gpu(kernel_library, monkeypatch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to PyTorch")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "experiments"))
    import logquant_kernel as harness  # experiments/logquant_kernel.py

    results = harness.check(KernelLibrary(kernel_library), torch.device("cuda"))
    assert len(results) == 2 * 2 * len(harness.CASES) + len(harness.CASES)
    bad = {name: r for name, r in results.items() if r["mismatches"] or r["max_abs_diff"]}
    assert not bad
