"""The CLI on a user's own model (`--model path/to/file.py:factory`) and on the registered
classifiers: calibrate, export (FP32 and INT8 Q/DQ as DIR/model.onnx), inspect, classify; bad
references and SAM-only commands refused with one line and exit status 2."""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import onnx
import pytest
import torch

from trtq.artifacts import sha256_file
from trtq.cli import main
from trtq.data import ImageFolder

FACTORY = textwrap.dedent('''
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch import nn


    class Net(nn.Module):
        """Conv + BatchNorm patch embedding, SDPA attention, an MLP head."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 4, stride=4)
            self.bn = nn.BatchNorm2d(16)
            self.qkv, self.proj = nn.Linear(16, 48), nn.Linear(16, 16)
            self.head = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 5))

        def forward(self, image):
            t = torch.relu(self.bn(self.conv(image))).flatten(2).transpose(1, 2)
            q, k, v = self.qkv(t).reshape(t.shape[0], -1, 3, 2, 8).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
            return self.head((t + self.proj(a)).mean(1))


    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

        def forward(self, x, shift, scale=2.0):
            return self.b(torch.relu(self.a(x) + shift)) * scale


    def preprocess(rgb):
        small = np.asarray(Image.fromarray(rgb).resize((32, 32)), dtype=np.float32) / 255
        return torch.from_numpy(small.transpose(2, 0, 1).copy())


    def factory():
        torch.manual_seed(0)
        net = Net().eval()
        with torch.no_grad():
            net.bn.running_mean.uniform_(-0.2, 0.2)
            net.bn.running_var.uniform_(0.5, 2.0)
        return net, preprocess


    def tensors():
        torch.manual_seed(0)
        return TwoInputs().eval()


    def bare_linear():
        return nn.Linear(4, 4)


    def needs_arguments(width):
        return nn.Linear(width, width)


    def not_a_module():
        return "a string"


    def bad_preprocess():
        return nn.Linear(4, 4), 5


    def raises():
        raise RuntimeError("weights not found")


    CONSTANT = 3
''')


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "user_net.py"
    path.write_text(FACTORY)
    return path


@pytest.fixture(scope="module")
def pictures(tiny_coco):
    return tiny_coco / "train2017"


def _module(path, name):
    from trtq.models.user_model import load_user_model

    return load_user_model(f"{path}:{name}")


def _real_batch(user_or_image, folder, count: int = 3) -> np.ndarray:
    """The first `count` pictures of `folder`, preprocessed: a batch unlike the traced one."""
    return np.concatenate([user_or_image(rgb) for _, rgb in ImageFolder(folder, limit=count)])


def _ort(path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _rel(got, ref) -> float:
    return float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1.0))


def test_user_model_calibrates_and_exports_int8_and_fp32(factory_file, pictures, tmp_path,
                                                         capsys):
    import trtq

    ref = f"{factory_file}:factory"
    cal, int8, fp32 = tmp_path / "cal", tmp_path / "int8", tmp_path / "fp32"
    calibrate = ["calibrate", "--model", ref, "--images", str(pictures), "--num-images", "4",
                 "--recipe", "w8a8", "--out", str(cal)]
    assert main(calibrate) == 0
    meta = json.loads((cal / "quant_state.pt.json").read_text())
    assert meta["model"] == ref and meta["images"] == 4 and meta["input_names"] == ["image"]
    assert meta["user_model"]["file_sha256"] == sha256_file(factory_file)
    assert meta["quantizers_on"] == 14  # 5 layers: input + weight; SDPA: 2 products x 2
    capsys.readouterr()
    before = (cal / "quant_state.pt").read_bytes()
    assert main(calibrate) == 2  # never overwritten without --force
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (cal / "quant_state.pt").read_bytes() == before

    export = ["export", "--model", ref, "--calibrated", str(cal), "--out", str(int8)]
    assert main(export) == 0
    side = json.loads((int8 / "model.onnx.json").read_text())
    assert side["lint_errors"] == [] and side["int8_mac_coverage"] >= 0.95
    assert side["calibration_id"] == meta["calibration_id"] and side["model"] == ref
    assert side["inputs"]["quant_state"] == meta["sha256"] and side["precision"] == "int8"
    assert side["dynamic_axes"] == {"image": {"0": "batch"}, "output": {"0": "batch"}}
    report = tmp_path / "inspect.json"
    assert main(["inspect", "--onnx", str(int8 / "model.onnx"), "--out", str(report)]) == 0
    assert json.loads(report.read_text())["lint_errors"] == []

    # onnxruntime against the fake-quantized PyTorch model, at another batch size, real images
    user = _module(factory_file, "factory")
    trtq.load(user.module, cal / "quant_state.pt")
    batch = _real_batch(user.image, pictures)
    with torch.no_grad():
        expected = user.module(torch.from_numpy(batch)).numpy()
    assert _rel(_ort(int8 / "model.onnx", {"image": batch})[0], expected) < 1e-2

    capsys.readouterr()
    assert main(export) == 2
    assert "model.onnx already exists; pass --force" in capsys.readouterr().err
    assert main([*export, "--force"]) == 0

    assert main(["export", "--model", ref, "--out", str(fp32)]) == 0
    side = json.loads((fp32 / "model.onnx.json").read_text())
    assert side["precision"] == "fp32" and side["parity_cases"] == 2
    assert side["inputs"] == {"model_source": sha256_file(factory_file)}
    float_model = _module(factory_file, "factory").module
    with torch.no_grad():
        expected = float_model(torch.from_numpy(batch)).numpy()
    assert _rel(_ort(fp32 / "model.onnx", {"image": batch})[0], expected) < 1e-4


def test_user_model_from_npz_inputs(factory_file, tmp_path, capsys):
    ref = f"{factory_file}:tensors"
    rng = np.random.default_rng(0)
    named, positional = tmp_path / "named", tmp_path / "positional"
    named.mkdir()
    positional.mkdir()
    for i in range(3):
        x, shift = rng.standard_normal((4, 8), np.float32), rng.standard_normal((4, 16), np.float32)
        np.savez(named / f"{i}.npz", x=x, shift=shift)
        np.savez(positional / f"{i}.npz", x, shift)
    cal = tmp_path / "cal"
    assert main(["calibrate", "--model", ref, "--calib-data", str(named), "--out", str(cal)]) == 0
    assert "3 input files" in capsys.readouterr().out
    out = tmp_path / "int8"
    assert main(["export", "--model", ref, "--calibrated", str(cal), "--calib-data",
                 str(positional), "--out", str(out)]) == 0
    graph = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["x", "shift"]
    assert json.loads((out / "model.onnx.json").read_text())["lint_errors"] == []
    # without a preprocess, pictures and a missing example input are refused
    assert main(["export", "--model", ref, "--out", str(tmp_path / "fp32")]) == 2
    assert "give --calib-data DIR (.npz inputs)" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "0.npz", x=np.zeros((1, 8), np.float32), offset=np.zeros((1, 16), np.float32))
    assert main(["calibrate", "--model", ref, "--calib-data", str(bad), "--out",
                 str(tmp_path / "c2")]) == 2
    assert "has 'offset', which the model's forward(x, shift, scale) does not take" in \
        capsys.readouterr().err
    assert not (tmp_path / "c2").exists()


BAD_REFERENCES = [
    ("{dir}/missing.py:factory", "does not exist; check the path"),
    ("no_such_package_xyz.models:factory", "module 'no_such_package_xyz.models' is not found"),
    ("{file}:nothing", "has no attribute 'nothing'; it defines"),
    ("{file}:CONSTANT", "is a value of type int, not a function"),
    ("{file}:needs_arguments", "needs arguments; the factory is called with none"),
    ("{file}:not_a_module", "returned a value of type str, not a torch.nn.Module"),
    ("{file}:bad_preprocess", "as the preprocess; it must be callable"),
    ("{file}:raises", "raised RuntimeError: weights not found; fix the factory"),
    ("{file}:", "give a registered model name, or your own as package.module:factory"),
]


@pytest.mark.parametrize("reference, phrase", BAD_REFERENCES)
def test_bad_references_say_what_to_fix(factory_file, tmp_path, capsys, reference, phrase):
    ref = reference.format(dir=tmp_path, file=factory_file)
    out = tmp_path / "out"
    assert main(["export", "--model", ref, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert phrase in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    ["eval", "--data", "d", "--split", "val", "--out", "{tmp}/r.json"],
    ["run", "--out", "{tmp}/run"],
    ["autoquant", "--calib-data", "d", "--split", "calib", "--min-agreement", "0.9",
     "--out", "{tmp}/aq"],
])
def test_sam_only_commands_refuse_a_user_model(factory_file, tmp_path, capsys, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main([argv[0], "--model", f"{factory_file}:factory", *argv[1:]]) == 2
    assert "is your own model" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user_net.py"]


def test_user_model_calibration_refusals(factory_file, pictures, tmp_path, capsys):
    ref = f"{factory_file}:factory"
    cases = [(["--images", str(pictures), "--recipe", "w8a8-ptq4vit"], "searches ranges"),
             (["--images", str(pictures), "--recipe", "w8a8-ptq4sam"], "folds BIG"),
             ([], "needs calibration data: --images DIR"),
             (["--calib-data", str(pictures)], "holds 000"),
             (["--images", str(pictures), "--split", "calib"], "--split picks a COCO split")]
    for extra, phrase in cases:
        assert main(["calibrate", "--model", ref, *extra, "--out", str(tmp_path / "c")]) == 2
        assert phrase in capsys.readouterr().err
    assert main(["calibrate", "--model", f"{factory_file}:bare_linear", "--images",
                 str(pictures), "--num-images", "1", "--out", str(tmp_path / "c")]) == 2
    assert "returned no preprocess" in capsys.readouterr().err
    assert main(["calibrate", "--model", "vit_test", "--images", str(pictures),
                 "--out", str(tmp_path / "c")]) == 2
    assert "--images is for your own model" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_package_module_reference_and_a_checkpoint(factory_file, tmp_path, monkeypatch,
                                                     capsys):
    package = tmp_path / "trtq_test_user_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(factory_file, package / "nets.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = "trtq_test_user_pkg.nets:factory"
    weights = tmp_path / "weights.pth"
    user = _module(factory_file, "factory")
    with torch.no_grad():
        user.module.head[2].bias.fill_(0.5)
    torch.save(user.module.state_dict(), weights)
    out = tmp_path / "fp32"
    assert main(["export", "--model", ref, "--checkpoint", str(weights), "--out", str(out)]) == 0
    side = json.loads((out / "model.onnx.json").read_text())
    assert side["model"] == ref and side["inputs"]["checkpoint"] == sha256_file(weights)
    assert side["user_model"]["file"] == str(package / "nets.py")
    graph = onnx.load(str(out / "model.onnx"))
    bias = next(i for i in graph.graph.initializer if i.name.endswith("head.2.bias"))
    assert np.all(onnx.numpy_helper.to_array(bias) == 0.5)
    torch.save(_module(factory_file, "tensors").module.state_dict(), weights)
    assert main(["export", "--model", ref, "--checkpoint", str(weights),
                 "--out", str(tmp_path / "x")]) == 2
    assert "does not fit model 'trtq_test_user_pkg.nets:factory'" in capsys.readouterr().err


def test_inspect_recipe_lists_the_function_call_attention(factory_file, capsys):
    assert main(["inspect", "--recipe", "w8a8", "--model", f"{factory_file}:factory"]) == 0
    out = capsys.readouterr().out
    assert "14 of 14 quantizers on" in out
    for name in ("conv.weight_quantizer", "head.2.input_quantizer",
                 "func_sdpa_0.qk_matmul.input_quantizer", "func_sdpa_0.av_matmul.other_quantizer"):
        assert name in out


def test_classify_a_user_model_with_its_calibration(factory_file, pictures, tmp_path):
    ref, cal = f"{factory_file}:factory", tmp_path / "cal"
    assert main(["calibrate", "--model", ref, "--images", str(pictures), "--num-images", "4",
                 "--out", str(cal)]) == 0
    base, quant = tmp_path / "fp.json", tmp_path / "q.json"
    args = ["classify", "--model", ref, "--images", str(pictures), "--limit", "4"]
    assert main([*args, "--out", str(base)]) == 0
    assert main([*args, "--calibrated", str(cal), "--reference", str(base),
                 "--out", str(quant)]) == 0
    record = json.loads(quant.read_text())
    assert record["recipe"] == "w8a8" and record["images"] == 4
    assert 0.0 <= record["agreement"] <= 1.0 and record["model"] == ref


def test_a_registered_classifier_exports_fp32_and_int8(pictures, tmp_path, capsys):
    from trtq.models import load_model

    fp32, cal, int8 = tmp_path / "fp32", tmp_path / "cal", tmp_path / "int8"
    assert main(["export", "--model", "vit_test", "--out", str(fp32)]) == 0
    graph = onnx.load(str(fp32 / "model.onnx"))
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert graph.graph.input[0].name == "image" and dims == ["batch", 3, 32, 32]
    assert [o.name for o in graph.graph.output] == ["logits"]
    side = json.loads((fp32 / "model.onnx.json").read_text())
    assert side["preprocess"]["img_size"] == 32 and side["part"] == "model"
    model = load_model("vit_test")
    batch = _real_batch(model.preprocess.image, pictures)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    assert _rel(_ort(fp32 / "model.onnx", {"image": batch})[0], expected) < 1e-4

    assert main(["calibrate", "--model", "vit_test", "--calib-data", str(pictures),
                 "--num-images", "4", "--out", str(cal)]) == 0
    assert main(["export", "--model", "vit_test", "--calibrated", str(cal),
                 "--out", str(int8)]) == 0
    report = tmp_path / "inspect.json"
    assert main(["inspect", "--onnx", str(int8 / "model.onnx"), "--out", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["lint_errors"] == [] and result["int8_mac_coverage_of_recipe"] == 1.0
    assert result["int8_mac_coverage"] > 0.8  # the patch embedding stays float in w8a8
    capsys.readouterr()
    assert main(["export", "--model", "vit_test", "--logquant", "plugin", "--calibrated",
                 str(cal), "--out", str(tmp_path / "x")]) == 2
    assert "apply to SAM-family exports" in capsys.readouterr().err
    assert main(["export", "--model", "deit_distilled_test", "--calibrated", str(cal),
                 "--out", str(tmp_path / "x")]) == 2
    assert "calibrated for 'vit_test'" in capsys.readouterr().err


def test_classifier_int8_parses_and_builds_with_a_dynamic_batch(trt, pictures, tmp_path):
    from trtq.engines.tensorrt_api import build_serialized, parse_onnx, summarize_layers

    cal, int8 = tmp_path / "cal", tmp_path / "int8"
    assert main(["calibrate", "--model", "vit_test", "--calib-data", str(pictures),
                 "--num-images", "2", "--out", str(cal)]) == 0
    assert main(["export", "--model", "vit_test", "--calibrated", str(cal),
                 "--out", str(int8)]) == 0
    parsed = parse_onnx(int8 / "model.onnx", trt)
    assert summarize_layers(parsed)["QUANTIZE"] > 10
    shapes = {"image": [(1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32)]}
    assert len(build_serialized(parsed, precision="int8", shapes=shapes)) > 10_000
