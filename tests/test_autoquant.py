"""`trtq autoquant`: groups, time attribution, trtexec profiles, the choice, and the command on
a tiny model (onnxruntime measured here; tensorrt from profile files as `trtq deploy` pulls
them)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from trtq.autoquant.gains import gains, read_trtexec_profile
from trtq.autoquant.groups import OTHER, attribute, group_of, node_module
from trtq.autoquant.select import choose, decisions, final_agreement, rank
from trtq.cli import main
from trtq.errors import TrtqError
from trtq.models.sam_adapter import SAM

ENC = SAM.part_prefix("encoder")  # "image_encoder.": encoder node names lack it


def test_groups_are_indexed_blocks():
    assert group_of("image_encoder.layers.1.blocks.0.attn.qkv") == "image_encoder.layers.1.blocks.0"
    assert group_of("image_encoder.layers.1.downsample.conv1") == "image_encoder.layers.1"
    assert group_of("mask_decoder.transformer.layers.1.mlp.lin1") == \
        "mask_decoder.transformer.layers.1"
    assert group_of("mask_decoder.transformer.final_attn_token_to_image.q_proj") == \
        "mask_decoder.transformer.final_attn_token_to_image"


def test_node_and_engine_layer_names_are_attributed_to_groups():
    groups = ["image_encoder.layers.1", "image_encoder.layers.1.blocks.0",
              "mask_decoder.transformer.layers.0"]
    assert node_module("/layers.1/blocks.0/attn/qkv/MatMul", ENC) == \
        "image_encoder.layers.1.blocks.0.attn.qkv"
    assert attribute("/layers.1/blocks.0/attn/qkv/MatMul", ENC, groups) == groups[1]
    assert attribute("/layers.1/downsample/conv1/c/Conv", ENC, groups) == groups[0]
    assert attribute("/mask_decoder/transformer/layers.0/self_attn/q_proj/MatMul",
                     SAM.part_prefix("decoder"), groups) == groups[2]
    # TensorRT: fused layers name their ONNX nodes; Myelin regions their first and last
    assert attribute("/layers.1/blocks.0/attn/qkv/MatMul + /layers.1/blocks.0/attn/Reshape",
                     ENC, groups) == groups[1]
    assert attribute("{ForeignNode[/layers.1/blocks.0/attn/Mul.../layers.1/blocks.0/Add]}",
                     ENC, groups) == groups[1]
    assert attribute("Reformatting CopyNode for Input Tensor 0 to x", ENC, groups) == OTHER
    assert attribute("BiasGelu_token_3", ENC, groups) == OTHER


def _profile(path: Path, layers: dict[str, float], count: int = 10) -> Path:
    records = [{"count": count}] + [
        {"name": n, "timeMs": ms * count, "averageMs": ms, "medianMs": ms,
         "percentage": 100 * ms / sum(layers.values())} for n, ms in layers.items()]
    path.write_text(json.dumps(records))
    return path


def test_trtexec_profile_is_read_and_other_files_refused(tmp_path):
    layers = read_trtexec_profile(_profile(tmp_path / "p.json", {"a + b": 0.5, "c": 0.25}))
    assert layers == {"a + b": 0.5, "c": 0.25}
    # older releases: no averageMs, the total over `count` iterations
    (tmp_path / "old.json").write_text(json.dumps([{"count": 4}, {"name": "a", "timeMs": 2.0,
                                                                  "percentage": 100}]))
    assert read_trtexec_profile(tmp_path / "old.json") == {"a": 0.5}
    (tmp_path / "times.json").write_text(json.dumps([{"computeMs": 1.0, "latencyMs": 1.1}]))
    with pytest.raises(TrtqError, match="not a trtexec --exportProfile"):
        read_trtexec_profile(tmp_path / "times.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TrtqError, match="cannot read"):
        read_trtexec_profile(tmp_path / "bad.json")


def test_gains_add_up_to_the_whole():
    base = {"encoder": {"/layers.1/blocks.0/attn/qkv/MatMul": 3.0, "Gelu_token_1": 1.0}}
    int8 = {"encoder": {"/layers.1/blocks.0/attn/qkv/MatMul": 1.0,
                        "/layers.1/blocks.0/attn/qkv/input_quantizer/QuantizeLinear": 0.5,
                        "BiasGelu_token_1": 1.25}}
    rows = gains(base, int8, ["image_encoder.layers.1.blocks.0"], SAM.part_prefixes)
    assert rows["image_encoder.layers.1.blocks.0"] == {"baseline_ms": 3.0, "int8_ms": 1.5,
                                                       "gain_ms": 1.5}
    assert rows[OTHER]["gain_ms"] == pytest.approx(-0.25)
    assert sum(r["gain_ms"] for r in rows.values()) == pytest.approx(4.0 - 2.75)


def test_choice_never_takes_a_slower_group_and_verifies_the_whole():
    rows = {"fast_cheap": {"gain_ms": 10.0, "cost": 0.001},
            "fast_costly": {"gain_ms": 20.0, "cost": 0.015},
            "slower": {"gain_ms": -1.0, "cost": 0.0},
            "small": {"gain_ms": 1.0, "cost": 0.004}}
    assert rank(rows) == ["fast_cheap", "fast_costly", "small"]
    measured = []

    def measure(sets):
        measured.extend(list(groups) for groups in sets)
        return [1.0 - 1.5 * sum(rows[g]["cost"] for g in groups)  # costs compound
                for groups in sets]

    chosen, history = choose(rows, 0.98, measure)
    # predicted: all three fit (1 − 0.020 = 0.98); measured 0.970, then 0.976 without the last
    # one added, then 0.9985 with fast_cheap alone
    assert measured == [["fast_cheap", "fast_costly", "small"], ["fast_cheap", "fast_costly"],
                        ["fast_cheap"]]
    assert chosen == ["fast_cheap"]
    assert [round(h["agreement"], 4) for h in history] == [0.97, 0.976, 0.9985]
    assert history[0]["predicted"] == pytest.approx(0.98)
    why = decisions(rows, chosen, 0.98, history)
    assert why["slower"].startswith("float: not faster")
    assert why["fast_cheap"] == "int8"
    assert why["small"] == "float: with it the measured agreement was 0.9700 < 0.98"
    assert final_agreement(history, chosen) == pytest.approx(0.9985)


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_add_back_keeps_the_groups_the_summed_costs_left_out_when_measured_good(jobs):
    """Errors of different groups partly cancel (here a set loses half its summed cost): the
    prediction stops at e + a, the add-back measures b, c and d with them, keeps b and c and
    leaves d float; in chains of `jobs` candidates the same groups end INT8."""
    rows = {"a": {"gain_ms": 10.0, "cost": 0.01}, "b": {"gain_ms": 8.0, "cost": 0.01},
            "c": {"gain_ms": 6.0, "cost": 0.01}, "d": {"gain_ms": 1.0, "cost": 0.03},
            "e": {"gain_ms": 3.0, "cost": 0.001}, "slower": {"gain_ms": -2.0, "cost": 0.0}}

    def measure(sets):
        return [1.0 - 0.5 * sum(rows[g]["cost"] for g in groups) for groups in sets]

    chosen, history = choose(rows, 0.98, measure, jobs)
    assert rank(rows) == ["e", "a", "b", "c", "d"]
    assert history[0]["step"] == "verify" and sorted(history[0]["groups"]) == ["a", "e"]
    assert sorted(chosen) == ["a", "b", "c", "e"]
    assert final_agreement(history, chosen) == pytest.approx(1.0 - 0.5 * 0.031)
    assert all(h["agreement"] >= 0.98 or h["groups"][-1] == "d" for h in history)
    why = decisions(rows, chosen, 0.98, history)
    assert why["d"].startswith("float: with it the measured agreement was 0.96")
    assert why["c"] == "int8" and why["slower"].startswith("float: not faster")


@pytest.fixture
def calib_split(synthetic_calib6) -> Path:
    return synthetic_calib6


def test_autoquant_onnxruntime_writes_a_calibration_folder(calib_split, tmp_path):
    out = tmp_path / "aq"
    assert main(["autoquant", "--model", "tiny_litemedsam", "--calib-data", str(calib_split),
                 "--split", "calib", "--num-images", "3", "--held-out", "3",
                 "--min-agreement", "0.5", "--jobs", "2", "--out", str(out)]) == 0
    report = json.loads((out / "autoquant.json").read_text())
    summary = report["summary"]
    groups = {r["group"]: r for r in report["groups"] if r["group"] != OTHER}
    assert summary["groups"] == len(groups) >= 5
    assert "image_encoder.layers.1.blocks.0" in groups
    for row in groups.values():
        assert 0.0 <= row["agreement_alone"] <= 1.0
        assert row["cost"] == pytest.approx(1.0 - row["agreement_alone"])
        assert row["baseline_ms"] >= 0 and row["int8_ms"] >= 0
        assert (row["decision"] == "int8") == (row["group"] in report["chosen"])
        if row["gain_ms"] <= 0:
            assert row["decision"].startswith("float: not faster")
    assert summary["held_out_agreement"] >= 0.5
    assert summary["held_out_images"] == 3 and report["held_out_image_ids"]
    # the folder is a calibration: only the chosen groups' quantizers are saved
    from trtq.calib.calibrate import read_quant_state

    recipe, states, _ = read_quant_state(out / "quant_state.pt")
    assert recipe.target == "onnxruntime" and recipe.name.endswith("-autoquant")
    # (which groups win depends on this machine's timings: the tensorrt test below pins them)
    saved = {group_of(name.rpartition(".")[0]) for name in states}
    assert saved == set(report["chosen"])
    # ... that exports, and whose recipe file calibrates again
    assert main(["export", "--model", "tiny_litemedsam", "--calibrated", str(out),
                 "--target", "onnxruntime", "--out", str(tmp_path / "onnx")]) == 0
    assert onnx.load(str(tmp_path / "onnx" / "encoder.onnx")).graph.node
    assert main(["calibrate", "--model", "tiny_litemedsam", "--recipe",
                 str(out / "recipe.json"), "--calib-data", str(calib_split), "--split",
                 "calib", "--num-images", "2", "--out", str(tmp_path / "again")]) == 0
    _, again, _ = read_quant_state(tmp_path / "again" / "quant_state.pt")
    assert set(again) == set(states)
    # an existing folder is not overwritten
    assert main(["autoquant", "--model", "tiny_litemedsam", "--calib-data", str(calib_split),
                 "--split", "calib", "--num-images", "3", "--min-agreement", "0.5",
                 "--out", str(out)]) == 2


def test_autoquant_tensorrt_reads_deploy_profiles(calib_split, tiny_onnx, tmp_path):
    """Profiles named as `trtq deploy` pulls them (OUT/device/PART.PRECISION.profile.json),
    with layer names built from the real ONNX nodes: a group that is slower in INT8 stays
    float, one that is faster becomes INT8."""
    nodes = [n.name for n in onnx.load(str(tiny_onnx / "encoder.onnx")).graph.node
             if n.op_type == "MatMul"]
    fast = [n for n in nodes if n.startswith("/layers.1/blocks.0/")]
    slow = [n for n in nodes if n.startswith("/layers.2/blocks.0/")]
    assert fast and slow
    device = tmp_path / "deploy" / "device"
    device.mkdir(parents=True)
    fp16 = {" + ".join(fast): 2.0, " + ".join(slow): 2.0, "Reformatting CopyNode": 0.1}
    int8 = {" + ".join(fast): 0.5, " + ".join(slow): 3.0, "Reformatting CopyNode": 0.3}
    _profile(device / "encoder.fp16.profile.json", fp16)
    _profile(device / "encoder.int8.profile.json", int8)
    out = tmp_path / "aq"
    assert main(["autoquant", "--model", "tiny_litemedsam", "--calib-data", str(calib_split),
                 "--split", "calib", "--num-images", "3", "--held-out", "2", "--backend",
                 "tensorrt", "--profile-dir", str(tmp_path / "deploy"), "--min-agreement",
                 "0.01", "--jobs", "1", "--out", str(out)]) == 0
    report = json.loads((out / "autoquant.json").read_text())
    rows = {r["group"]: r for r in report["groups"]}
    assert rows["image_encoder.layers.1.blocks.0"]["gain_ms"] == pytest.approx(1.5)
    assert rows["image_encoder.layers.1.blocks.0"]["decision"] == "int8"
    assert rows["image_encoder.layers.2.blocks.0"]["gain_ms"] == pytest.approx(-1.0)
    assert rows["image_encoder.layers.2.blocks.0"]["decision"].startswith("float: not faster")
    assert rows[OTHER]["gain_ms"] == pytest.approx(-0.2)
    assert report["chosen"] == ["image_encoder.layers.1.blocks.0"]
    from trtq.calib.calibrate import read_quant_state

    recipe, states, _ = read_quant_state(out / "quant_state.pt")
    assert recipe.target == "tensorrt"
    assert {group_of(name.rpartition(".")[0]) for name in states} == \
        {"image_encoder.layers.1.blocks.0"}


def test_autoquant_refuses_bad_setups(calib_split, tmp_path):
    base = ["autoquant", "--model", "tiny_litemedsam", "--calib-data", str(calib_split),
            "--split", "calib", "--out", str(tmp_path / "x")]
    assert main([*base, "--min-agreement", "1.5"]) == 2
    assert main([*base, "--min-agreement", "0.9", "--backend", "tensorrt"]) == 2
    assert main([*base, "--min-agreement", "0.9", "--num-images", "6"]) == 2  # none held out
    assert main([*base, "--min-agreement", "0.9", "--recipe", "w4a4"]) == 2
    assert main([*base, "--min-agreement", "0.9", "--backend", "tensorrt", "--profile-dir",
                 str(tmp_path)]) == 2
    assert not (tmp_path / "x").exists()


def test_add_back_can_be_turned_off():
    rows = {"a": {"gain_ms": 10.0, "cost": 0.015}, "b": {"gain_ms": 8.0, "cost": 0.015}}

    def measure(sets):
        return [1.0 - 0.5 * sum(rows[g]["cost"] for g in groups) for groups in sets]

    assert choose(rows, 0.98, measure, 2)[0] == ["a", "b"]
    chosen, history = choose(rows, 0.98, measure, 2, add_back=False)
    assert chosen == ["a"] and [h["step"] for h in history] == ["verify"]
