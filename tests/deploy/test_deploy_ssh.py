"""`trtq deploy` against a real OpenSSH server on 127.0.0.1 and a stand-in Orin Nano root.

The stand-in trtexec prints a recorded real TensorRT 10.x log (NVIDIA/TensorRT#4177); no
TensorRT runs here. What is real: ssh, sshd, rsync, the device runner script, the transfers,
their failures and retries, and trtq's parsing of what comes back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.loopback import DroppingProxy
from trtq.artifacts import sha256_file
from trtq.cli import main
from trtq.deploy.deploy import DeployConfig, deploy, probe
from trtq.deploy.plan import BenchSettings
from trtq.deploy.ssh import Remote, Retry, SshTarget
from trtq.deploy.transfer import PARTIAL_DIR, rsync, rsync_argv
from trtq.errors import TrtqError

FAST = Retry(attempts=3, first_wait_s=0.1)


def _target(lb, port=None, key=None) -> SshTarget:
    return SshTarget(lb.host, port=port or lb.port, key=str(key or lb.key),
                     config=str(lb.ssh_config))


def _argv(lb, onnx, out, remote_dir, *extra, port=None, key=None) -> list[str]:
    return ["deploy", "--host", lb.host, "--port", str(port or lb.port), "--key",
            str(key or lb.key), "--ssh-config", str(lb.ssh_config), "--onnx", str(onnx),
            "--out", str(out), "--remote-dir", str(remote_dir), "--iterations", "5",
            "--duration", "0", *extra]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_detects_the_stand_in_orin_nano(loopback, tmp_path):
    cfg = DeployConfig(target=_target(loopback), onnx=(), out=tmp_path,
                       remote_dir=str(tmp_path / "remote"))
    facts = probe(cfg, Remote(cfg.target))
    assert facts.model == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert (facts.l4t, facts.jetpack) == ("36.4.3", "6.2")
    assert facts.tensorrt == "10.3.0.30" and facts.tensorrt_source == "header"
    assert facts.dla is False
    assert facts.trtexec == str(loopback.trtexec) and facts.tegrastats == str(loopback.tegrastats)
    assert facts.mem_total_mib == pytest.approx(7802164 / 1024)
    assert facts.disk_free_mib > 100 and facts.rsync and facts.sha256sum
    assert not (tmp_path / "remote").exists()  # the probe changes nothing


def test_full_deploy_int8_and_fp16(loopback, tiny_run_folder, tmp_path, capsys):
    out, remote = tmp_path / "results", tmp_path / "remote"
    assert main(_argv(loopback, tiny_run_folder, out, remote)) == 0
    shown = capsys.readouterr().out
    assert "| encoder.int8 | 7.141 | 12.94" in shown and "| 130.3 |" in shown  # recorded log
    report = json.loads((out / "report.json").read_text())
    assert report["device"]["jetpack"] == "6.2"
    names = [m["name"] for m in report["models"]]
    assert names == ["encoder.fp16", "decoder.fp16", "encoder.int8", "decoder.int8"]
    for model in report["models"]:
        engine = remote / "engines" / f"{model['name']}.engine"
        assert model["engine_sha256"] == sha256_file(engine)  # built on the "device"
        assert model["engine_bytes"] == engine.stat().st_size
        assert model["trtexec"]["latency_ms"]["median"] == pytest.approx(7.14139)
        assert model["trtexec"]["fps"] == pytest.approx(130.298)
        power = model["power"]
        assert power["samples"] >= 2 and power["power_source"] == "VDD_IN"
        assert 4000 < power["power_mw_mean"] < 8000
        assert power["inferences"] == round(130.298 * 3.00082)
        sidecar = json.loads((out / "engines" / f"{model['name']}.engine.json").read_text())
        assert sidecar["sha256"] == model["engine_sha256"]
        assert sidecar["inputs"]["onnx"] == sha256_file(model["onnx"])
    assert [r["part"] for r in report["int8_vs_fp16"]] == ["decoder", "encoder"]
    assert report["int8_vs_fp16"][0]["int8_speedup_median"] == pytest.approx(1.0)
    pulled = _files(out / "device")
    assert "manifest.sha256" in pulled and "encoder.int8.bench.log" in pulled
    assert "decoder.fp16.layers.json" in pulled and "decoder.fp16.times.json" in pulled
    # per-layer profiles for `trtq autoquant --backend tensorrt`
    assert {"encoder.fp16.profile.json", "encoder.int8.profile.json"} <= set(pulled)
    # the trtexec command lines the runner executed
    log = (out / "device" / "decoder.fp16.bench.log").read_text()
    assert "--loadEngine=engines/decoder.fp16.engine --shapes=boxes:1x4 --iterations=5" in log
    build_log = (out / "device" / "encoder.int8.build.log").read_text()
    assert "--int8 --fp16" in build_log and "--skipInference" in build_log
    # nothing half-written on either side
    assert not [f for f in _files(remote) + pulled if f.endswith(".partial")]
    assert not list(remote.rglob("*.partial"))  # no build folder left either
    assert not (out / "device" / PARTIAL_DIR).exists()

    # a second deploy refuses to overwrite the report; with --force the engines are reused
    engine = remote / "engines" / "encoder.int8.engine"
    before = engine.stat().st_mtime_ns
    assert main(_argv(loopback, tiny_run_folder, out, remote)) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(_argv(loopback, tiny_run_folder, out, remote, "--force")) == 0
    assert engine.stat().st_mtime_ns == before


def _big_file(folder: Path, mib: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big.bin"
    path.write_bytes(os.urandom(mib << 20))
    return path


def _wait_for(predicate, timeout_s: float = 20) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_push_resumes_after_a_killed_transfer(loopback, tmp_path):
    big = _big_file(tmp_path / "src", 24)
    dest = tmp_path / "dest"
    dest.mkdir()
    remote = Remote(_target(loopback), retry=FAST)
    argv = rsync_argv(remote, f"{big.parent}/", f"{loopback.host}:{dest}/", bwlimit_kib=2048)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = dest / PARTIAL_DIR / "big.bin"

    def got_some() -> bool:
        tmp = [p for p in dest.rglob("*big.bin*") if p.is_file()]
        return any(p.stat().st_size > (4 << 20) for p in tmp)

    _wait_for(got_some)
    proc.send_signal(signal.SIGKILL)  # the local side dies mid-file
    proc.wait(timeout=10)
    _wait_for(partial.exists)  # the receiver kept what it had, out of the way
    assert not (dest / "big.bin").exists()  # never a half file under the real name
    kept = partial.stat().st_size
    assert 0 < kept < (24 << 20)
    stats = rsync(remote, f"{big.parent}/", f"{loopback.host}:{dest}/", "resume")
    assert sha256_file(dest / "big.bin") == sha256_file(big)
    assert stats.matched_bytes >= kept - (1 << 20)  # the kept bytes were not sent again
    assert stats.literal_bytes <= (24 << 20) - kept + (1 << 20)
    assert not partial.exists()


def test_push_retries_a_dropped_connection(loopback, tmp_path):
    big = _big_file(tmp_path / "src", 8)
    dest = tmp_path / "dest"
    dest.mkdir()
    with DroppingProxy(loopback.port, drop_after_bytes=1 << 20) as proxy:
        remote = Remote(_target(loopback, port=proxy.port), retry=FAST)
        stats = rsync(remote, f"{big.parent}/", f"{loopback.host}:{dest}/", "push")
        assert proxy.dropped == 1 and stats.tries == 2
    assert sha256_file(dest / "big.bin") == sha256_file(big)
    assert not (dest / PARTIAL_DIR).exists()


def test_full_deploy_through_a_dropping_link(loopback, tiny_onnx, tmp_path):
    """The push is cut once mid-way; the deploy retries, resumes and finishes."""
    with DroppingProxy(loopback.port, drop_after_bytes=400 << 10) as proxy:
        cfg = DeployConfig(target=_target(loopback, port=proxy.port), onnx=(tiny_onnx,),
                           out=tmp_path / "out", remote_dir=str(tmp_path / "remote"))
        result = deploy(cfg, retry=FAST)
        assert proxy.dropped == 1
    assert result.push.tries == 2
    assert [m["name"] for m in result.report["models"]] == ["encoder.fp16", "decoder.fp16"]
    for name in ("encoder", "decoder"):
        pushed = tmp_path / "remote" / "inputs" / f"{name}.fp16.onnx"
        assert sha256_file(pushed) == sha256_file(tiny_onnx / f"{name}.onnx")


def test_refuses_when_the_device_disk_is_too_small(loopback, tiny_onnx, tmp_path, capsys):
    remote = tmp_path / "remote"
    code = main(_argv(loopback, tiny_onnx, tmp_path / "out", remote, "--reserve-mib",
                      str(10**9)))
    err = capsys.readouterr().err
    assert code == 2 and "MiB free" in err and "needs" in err and "--reserve-mib" in err
    assert not remote.exists()  # refused before anything was pushed


@pytest.mark.parametrize("case", ["refused", "unknown_host", "bad_key"])
def test_clear_errors_for_wrong_host_and_bad_key(loopback, tiny_onnx, tmp_path, capsys, case):
    from tests.deploy.loopback import free_port

    port = free_port() if case == "refused" else None
    key = loopback.bad_key if case == "bad_key" else None
    argv = _argv(loopback, tiny_onnx, tmp_path / "out", tmp_path / "remote", port=port, key=key)
    host = "nvidia@trtq-no-such-jetson.invalid" if case == "unknown_host" else loopback.host
    argv[argv.index("--host") + 1] = host
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    expected = {"refused": "nothing listens for SSH", "unknown_host": "cannot resolve",
                "bad_key": "ssh-copy-id"}[case]
    assert err.startswith("trtq: error:") and expected in err
    assert not (tmp_path / "remote").exists()
    # permanent errors are not retried: one try only
    target = SshTarget(host, port=port or loopback.port, key=str(key or loopback.key),
                       config=str(loopback.ssh_config))
    remote = Remote(target, retry=FAST)
    cfg = DeployConfig(target=target, onnx=(), out=tmp_path, remote_dir=str(tmp_path / "r"))
    with pytest.raises(TrtqError, match=expected):
        probe(cfg, remote)
    assert remote.tries == {"detect the device (read-only)": 1}


def test_missing_trtexec_is_refused_before_the_push(loopback, tiny_onnx, tmp_path, capsys):
    with loopback.remove_trtexec():
        code = main(_argv(loopback, tiny_onnx, tmp_path / "out", tmp_path / "remote"))
    err = capsys.readouterr().err
    assert code == 2 and "trtexec is missing" in err and "libnvinfer-bin" in err
    assert not (tmp_path / "remote").exists()


def test_failed_build_leaves_no_partial_engine(loopback, tiny_onnx, tmp_path):
    remote = tmp_path / "remote"
    cfg = DeployConfig(target=_target(loopback), onnx=(tiny_onnx,), out=tmp_path / "out",
                       remote_dir=str(remote))
    with loopback.failing_builds(), pytest.raises(TrtqError) as info:
        deploy(cfg, retry=FAST)
    assert "build encoder.fp16 failed" in str(info.value) and "[E]" in str(info.value)
    assert _files(remote / "engines") == []
    assert "encoder.fp16.build.log.failed" in _files(remote / "results")
    assert not [f for f in _files(remote) if f.endswith(".partial")]
    assert not (tmp_path / "out" / "report.json").exists()


def test_dry_run_probes_but_changes_nothing(loopback, tiny_onnx, tmp_path, capsys):
    remote = tmp_path / "remote"
    assert main(_argv(loopback, tiny_onnx, tmp_path / "out", remote, "--dry-run")) == 0
    text = capsys.readouterr().out
    assert "# device (probed): NVIDIA Jetson Orin Nano" in text
    assert "# 1. detect the device (read-only)" in text and "'sh -s " in text
    assert text.count("\nssh ") + text.count("\nrsync ") == 10  # probe + the 9 of a deploy
    assert not remote.exists() and not (tmp_path / "out").exists()


def test_remote_command_is_retried_after_the_connection_drops(loopback, tmp_path):
    """A device step whose connection dies (sshd session killed) runs again and succeeds."""
    import threading

    marker = tmp_path / "ran"
    remote = Remote(_target(loopback), retry=FAST)
    command = f"echo x >> {marker} && sleep 2 && echo finished"
    killer = threading.Timer(0.8, loopback.kill_sessions)
    killer.start()
    try:
        assert remote.run("a long step", command).strip() == "finished"
    finally:
        killer.cancel()
    assert remote.tries["a long step"] == 2
    assert marker.read_text().count("x") == 2


def test_builds_with_trtq_where_the_device_has_it(loopback, tiny_onnx, tmp_path, trt):
    """The device's trtq (this checkout, building with TensorRT-RTX ahead of time) builds the
    engines; its sidecars come back; the stand-in trtexec benchmarks the real plans."""
    wrapper = loopback.device_root / "usr" / "local" / "bin" / "trtq"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m trtq "$@"\n')
    wrapper.chmod(0o755)
    remote = tmp_path / "remote"
    try:
        cfg = DeployConfig(target=_target(loopback), onnx=(tiny_onnx,), out=tmp_path / "out",
                           remote_dir=str(remote), bench=BenchSettings(iterations=5,
                                                                       duration_s=0))
        result = deploy(cfg, retry=FAST)
    finally:
        wrapper.unlink()
    assert result.facts.trtq == str(wrapper)
    for model in result.report["models"]:
        engine = remote / "engines" / f"{model['name']}.engine"
        assert engine.read_bytes()[:4] in (b"vtrt", b"ftrt")  # a real plan
        build_log = (tmp_path / "out" / "device" / f"{model['name']}.build.log").read_text()
        assert f"built engines/{model['name']}.partial/{engine.name}" in build_log
        sidecar = json.loads((tmp_path / "out" / "device" /
                              f"{model['name']}.engine.json").read_text())
        assert sidecar["sha256"] == model["engine_sha256"] == sha256_file(engine)
        assert sidecar["inputs"]["onnx"] == model["onnx_sha256"]
