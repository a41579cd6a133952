"""Calibrated scales are quantizer buffers: in the state dict, moved with the model, loaded by
`load_state_dict`; calibration runs on the activations' device with the same results.

`tests/data/quant_state_v1/*.pt` were written by trtq before the scales were buffers (by
`write_v1_fixtures` below, run on that code): they must still load, and calibrating the same
network on the same data must reproduce their tensors exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trtq.calib.calibrate import (
    calibrate,
    load_quant_state,
    quantize,
    read_quant_state,
    save_quant_state,
    set_enabled,
)
from trtq.calib.modules import quantizers
from trtq.calib.observers import ActivationObserver, range_to_qparams
from trtq.calib.quantizer import TensorQuantizer
from trtq.calib.tasks import ClassifierTask
from trtq.errors import CalibrationError
from trtq.models.layers import MatMul
from trtq.recipes import QuantizerSpec, get_recipe

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "quant_state_v1"
# uniform (with the other symmetry's alt_*), log2 (AGQ: tau) and twin (scale2) quantizers
RECIPES = ("w8a8", "w8a8-agq", "w8a8-twin")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.qk_matmul, self.av_matmul = MatMul(), MatMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = self.qk_matmul(q, k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        return self.proj(self.av_matmul(torch.softmax(scores, dim=-1), v))


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn, self.mlp = Attention(dim), Mlp(dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t + self.attn(t)
        return t + self.mlp(t)


class Net(nn.Module):
    """Patch conv → attention → MLP → classifier head: every quantizer kind of the recipes
    (uniform, log2 post-softmax, twin post-softmax/post-GELU, shifted post-GELU)."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.blocks, self.head = nn.Sequential(Block(dim)), nn.Linear(dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x).flatten(2).transpose(1, 2)).mean(1))


def _net() -> Net:
    """Weights drawn from a seeded generator (not torch's init), the same on any torch."""
    net = Net().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net


def _batches(n: int = 3, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, 16, 16, generator=g) for _ in range(n)]


def _calibrated(recipe: str = "w8a8", seed: int = 1) -> Net:
    return calibrate(_net(), get_recipe(recipe), ClassifierTask(_batches(seed=seed)))


def _outputs(net: nn.Module, batches=None) -> list[torch.Tensor]:
    with torch.no_grad():
        return [net(b) for b in batches or _batches(2, seed=7)]


def write_v1_fixtures(folder: Path = FIXTURES) -> None:
    """The fixtures' generator (run once, on trtq before this change)."""
    folder.mkdir(parents=True, exist_ok=True)
    for recipe in RECIPES:
        save_quant_state(_calibrated(recipe), get_recipe(recipe), folder / f"{recipe}.pt")


# -- buffers in the state dict ---------------------------------------------------------------
def test_calibrated_scales_are_buffers_named_after_their_quantizer():
    float_keys = set(_net().state_dict())
    fresh = _net()
    quantize(fresh, get_recipe("w8a8"))
    assert set(fresh.state_dict()) == float_keys  # uncalibrated: no quantizer tensors
    assert all(q.scale is None for _, q in quantizers(fresh))

    state = _calibrated().state_dict()
    act, weight = "blocks.0.attn.qkv.input_quantizer", "blocks.0.attn.qkv.weight_quantizer"
    assert state[f"{act}.scale"].shape == () and state[f"{act}.scale"].dtype == torch.float32
    assert state[f"{act}.zero_point"].dtype == torch.int32
    assert {f"{act}.alt_scale", f"{act}.alt_zero_point"} <= set(state)
    assert state[f"{weight}.scale"].shape == (48,)  # per output channel
    assert f"{weight}.alt_scale" not in state  # weights have no other symmetry
    assert "blocks.0.attn.qk_matmul.other_quantizer.scale" in state
    extra = {k.rsplit(".", 1)[1] for k in set(state) - float_keys}
    assert extra == {"scale", "zero_point", "alt_scale", "alt_zero_point"}


@pytest.mark.parametrize(("recipe", "name", "buffers"), [
    ("w8a8-agq", "blocks.0.attn.av_matmul.input_quantizer", {"scale", "tau"}),
    ("w8a8-twin", "blocks.0.attn.av_matmul.input_quantizer", {"scale", "scale2"}),
    ("w8a8-twin", "blocks.0.mlp.fc2.input_quantizer", {"scale", "scale2"}),
])
def test_log2_and_twin_quantizers_keep_their_own_buffers(recipe, name, buffers):
    net = _calibrated(recipe)
    q = dict(quantizers(net))[name]
    assert {k for k, v in q.named_buffers()} == buffers
    assert q.tau is None or (q.tau.dtype == torch.int64 and int(q.tau) in (1, 2, 4))


@pytest.mark.parametrize("recipe", [*RECIPES, "w8a8-ptq4vit-deploy"])
def test_state_dict_round_trip_gives_bit_identical_outputs(recipe):
    source = _calibrated(recipe)
    want = _outputs(source)
    fresh = _net()
    quantize(fresh, get_recipe(recipe))  # quantizers configured, uncalibrated, off
    fresh.load_state_dict(source.state_dict())  # strict
    set_enabled(fresh, True)
    for got, expected in zip(_outputs(fresh), want, strict=True):
        assert torch.equal(got, expected)
    other = _calibrated(recipe, seed=5)  # calibrated on other data: on, other scales
    assert not all(torch.equal(a, b) for a, b in zip(_outputs(other), want, strict=True))
    other.load_state_dict(source.state_dict())
    for got, expected in zip(_outputs(other), want, strict=True):
        assert torch.equal(got, expected)


def test_a_state_without_a_quantizer_leaves_it_as_it_is():
    net = _calibrated()
    state = {k: v for k, v in net.state_dict().items() if ".head.input_quantizer." not in k
             and not k.startswith("head.input_quantizer.")}
    fresh = _net()
    quantize(fresh, get_recipe("w8a8"))
    result = fresh.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and dict(quantizers(fresh))["head.input_quantizer"].scale \
        is None
    with pytest.raises(RuntimeError, match="head.input_quantizer.scale"):
        _calibrated().load_state_dict(state)  # strict: a calibrated quantizer's keys missing


def test_an_uncalibrated_quantizer_is_identity_off_and_refuses_to_run_on():
    q = TensorQuantizer()
    q.configure(QuantizerSpec())
    x = torch.randn(5)
    assert torch.equal(q(x), x) and list(q.state_dict()) == []
    q.enabled = True
    with pytest.raises(CalibrationError, match="no range"):
        q(x)


# -- the quant-state file ----------------------------------------------------------------------
@pytest.mark.parametrize("recipe", RECIPES)
def test_state_files_written_before_buffers_still_load(recipe):
    path = FIXTURES / f"{recipe}.pt"
    _, saved, _ = read_quant_state(path)
    net = _net()
    load_quant_state(net, path)
    loaded = dict(quantizers(net))
    for name, tensors in saved.items():
        assert loaded[name].enabled
        for key, value in tensors.items():  # the file's keys are the buffer names
            assert torch.equal(getattr(loaded[name], key), value), (name, key)
    calibrated = _calibrated(recipe)
    for got, want in zip(_outputs(net), _outputs(calibrated), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("recipe", RECIPES)
def test_calibration_reproduces_the_scales_of_the_code_before_buffers(recipe):
    """The same network and data on the CPU: the very tensors the old code saved."""
    _, saved, _ = read_quant_state(FIXTURES / f"{recipe}.pt")
    net = _calibrated(recipe)
    ours = {name: q.state() for name, q in quantizers(net) if q.scale is not None}
    assert set(ours) == set(saved)
    for name, tensors in saved.items():
        assert set(ours[name]) == set(tensors), name
        for key, value in tensors.items():
            assert ours[name][key].dtype == value.dtype and torch.equal(ours[name][key], value)


def test_saved_state_round_trips(tmp_path):
    net = _calibrated("w8a8-agq")
    save_quant_state(net, get_recipe("w8a8-agq"), tmp_path / "state.pt")
    fresh = _net()
    load_quant_state(fresh, tmp_path / "state.pt")
    for (name, a), (_, b) in zip(net.state_dict().items(), fresh.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


# -- moves -------------------------------------------------------------------------------------
def test_scales_follow_the_device_but_stay_float32():
    net = _calibrated()
    want, scales = _outputs(net), {k: v.clone() for k, v in net.state_dict().items()
                                   if "_quantizer." in k}
    net.to(torch.float64)
    state = net.state_dict()
    assert state["head.weight"].dtype == torch.float64
    for key, value in scales.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    batches = [b.double() for b in _batches(2, seed=7)]
    for got, expected in zip(_outputs(net, batches), want, strict=True):
        torch.testing.assert_close(got.float(), expected, rtol=0, atol=0.05)
    net.to(torch.float32).half().float().to("cpu")  # half(): scales untouched
    assert all(torch.equal(net.state_dict()[k], v) for k, v in scales.items())


def test_meta_and_back():
    net = _calibrated()
    shapes = {k: (v.shape, v.dtype) for k, v in net.state_dict().items()}
    net.to("meta")
    q = dict(quantizers(net))["blocks.0.attn.qkv.weight_quantizer"]
    assert q.scale.is_meta and q.scale.dtype == torch.float32
    net.to_empty(device="cpu")
    assert {k: (v.shape, v.dtype) for k, v in net.state_dict().items()} == shapes
    assert all(v.device.type == "cpu" for v in net.state_dict().values())


def test_quantizers_are_created_on_the_quantized_module_device():
    net = _net().to("meta")
    quantize(net, get_recipe("w8a8"))
    q = dict(quantizers(net))["blocks.0.attn.qk_matmul.input_quantizer"]  # no parameters
    q.set_range(torch.tensor(-1.0), torch.tensor(2.0))
    assert q.scale.is_meta


# -- observers on the activations' device --------------------------------------------------
def test_activation_observer_matches_the_hand_computed_statistics():
    batches = [torch.tensor([-1.0, 0.5, 3.0]), torch.tensor([-4.0, 0.0, 1.0])]
    for observer, want in (("minmax", (-4.0, 3.0)), ("avg_minmax", (-3.5, 3.5))):
        obs = ActivationObserver(QuantizerSpec(observer=observer))
        for b in batches:
            obs.update(b)
        assert obs.compute() == want
        scale, zero = range_to_qparams(*map(torch.tensor, obs.compute()), obs.spec)
        assert float(scale) == pytest.approx(max(map(abs, want)) / 127) and int(zero) == 0
    obs = ActivationObserver(QuantizerSpec(observer="percentile", histogram_bins=128))
    obs.update(batches[0])
    assert obs.histogram.range == 3.0 and obs.histogram.counts.dtype == torch.float64
    expected = torch.histc(batches[0], 256, -3.0, 3.0).double()
    assert torch.equal(obs.histogram.counts, expected)
    obs.update(batches[1])  # |x| up to 4: the range doubles, bins merge pairwise
    assert obs.histogram.range == 6.0 and float(obs.histogram.counts.sum()) == 6


def _scales(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in net.state_dict().items() if "_quantizer." in k}


def _calibrate_on(device: str, recipe: str, observer: str) -> nn.Module:
    """Calibrate a float64 copy of the network on `device` (float64 makes the activations the
    same to ~1e-16 on any device, so the observers see the same float32 values)."""
    recipe_ = get_recipe(recipe).with_activation_observer(observer)
    net = _net().to(device, torch.float64)
    batches = [b.to(device, torch.float64) for b in _batches()]
    return calibrate(net, recipe_, ClassifierTask(batches))


@pytest.mark.parametrize(("recipe", "observer"), [
    ("w8a8", "minmax"), ("w8a8", "avg_minmax"), ("w8a8", "percentile"), ("w8a8", "entropy"),
    ("w8a8", "mse"), ("w8a8-ptq4vit-deploy", "percentile")])
def test_float64_calibration_matches_float32_on_the_cpu(recipe, observer):
    """The path the CUDA test takes (float64 model, float32 scales) also runs here."""
    ours = _scales(_calibrate_on("cpu", recipe, observer))
    ref = _scales(calibrate(_net(), get_recipe(recipe).with_activation_observer(observer),
                            ClassifierTask(_batches())))
    assert set(ours) == set(ref)
    for key, value in ref.items():
        assert ours[key].dtype == value.dtype
        torch.testing.assert_close(ours[key].double(), value.double(), rtol=1e-5, atol=0)


@CUDA
@pytest.mark.parametrize(("recipe", "observer"), [
    ("w8a8", "minmax"), ("w8a8", "avg_minmax"), ("w8a8", "percentile"), ("w8a8", "entropy"),
    ("w8a8", "mse"), ("w8a8-ptq4vit-deploy", "percentile"), ("w8a8-twin", "percentile")])
def test_cuda_calibration_matches_cpu(recipe, observer, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = _calibrate_on("cpu", recipe, observer)
    cuda = _calibrate_on("cuda", recipe, observer)
    assert all(v.device.type == "cuda" for v in cuda.state_dict().values())
    ours, ref = _scales(cuda), _scales(cpu)
    assert set(ours) == set(ref)
    for key, value in ref.items():
        torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=0)
    save_quant_state(cuda, get_recipe(recipe), tmp_path / "state.pt")  # CPU tensors in it
    _, saved, _ = read_quant_state(tmp_path / "state.pt")
    assert all(t.device.type == "cpu" for s in saved.values() for t in s.values())
    back = _net().to(torch.float64)
    load_quant_state(back, tmp_path / "state.pt")
    batch = _batches(1, seed=7)[0].double()
    with torch.no_grad():
        torch.testing.assert_close(cuda(batch.cuda()).cpu(), back(batch), rtol=1e-4, atol=1e-4)


@CUDA
def test_big_kde_runs_on_cuda():
    from trtq.calib.big import kde_density

    x = torch.cat([torch.randn(500) - 3, torch.randn(500) + 3]).double()
    points, density = kde_density(x, 64)
    cuda_points, cuda_density = kde_density(x.cuda(), 64)
    assert cuda_density.device.type == "cuda"
    torch.testing.assert_close(cuda_points.cpu(), points, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cuda_density.cpu(), density, rtol=1e-9, atol=1e-12)



def test_the_calibration_code_never_calls_cuda():
    root = Path(__file__).resolve().parents[2] / "trtq" / "calib"
    offenders = [p.name for p in sorted(root.glob("*.py")) if ".cuda(" in p.read_text()]
    assert offenders == []  # devices come from the model and the data (STYLE.md)
