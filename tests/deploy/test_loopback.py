"""The deploy-test harness itself: a real sshd on 127.0.0.1, the stand-in Jetson root and its
trtexec/tegrastats, the connection-dropping proxy. The parsers of trtq.bench read the stand-ins'
output, so deploy tests can rely on them."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy import loopback as harness
from tests.deploy.loopback import MODEL, DroppingProxy
from trtq.bench.tegrastats import parse_line, summarize
from trtq.bench.trtexec_parse import parse_export_times, parse_trtexec_log


def _random_file(path: Path, size: int) -> str:
    path.write_bytes(os.urandom(size))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(*argv, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# --- ssh and rsync against the real server ------------------------------------------------------

def test_ssh_command_sees_the_device_root(loopback):
    out = loopback.ssh("echo $TRTQ_DEVICE_ROOT; cat $TRTQ_DEVICE_ROOT/proc/device-tree/model")
    assert out.returncode == 0, out.stderr + loopback.read_log(tail=20)
    root, model = out.stdout.split("\n", 1)
    assert root == str(loopback.device_root)  # sshd_config SetEnv reaches the command
    assert model == MODEL + "\0"


def test_ssh_config_pins_the_throwaway_host_key(loopback):
    text = loopback.ssh_config.read_text()
    for setting in ("StrictHostKeyChecking yes", "BatchMode yes", "IdentitiesOnly yes",
                    "GlobalKnownHostsFile /dev/null", "ConnectTimeout 10", "LogLevel ERROR",
                    f'UserKnownHostsFile "{loopback.known_hosts}"'):
        assert setting in text
    first = loopback.known_hosts.read_text().splitlines()[0]
    assert first.startswith(f"[127.0.0.1]:{loopback.port} ssh-ed25519 ")
    assert loopback.key.stat().st_mode & 0o777 == 0o600
    assert loopback.host == f"{loopback.user}@127.0.0.1"


def test_bad_key_is_refused(loopback):
    out = loopback.ssh("true", key=loopback.bad_key)
    assert out.returncode == 255
    assert "Permission denied" in out.stderr
    assert loopback.ssh("true").returncode == 0  # the source address is not penalised


def test_rsync_over_ssh_copies_a_file(loopback, tmp_path):
    digest = _random_file(tmp_path / "blob.bin", 2 << 20)
    remote = tmp_path / "remote"
    out = loopback.rsync(tmp_path / "blob.bin", f"{loopback.host}:{remote}/")
    assert out.returncode == 0, out.stderr
    assert _sha256(remote / "blob.bin") == digest
    back = loopback.rsync(f"{loopback.host}:{remote}/blob.bin", tmp_path / "pulled.bin")
    assert back.returncode == 0, back.stderr
    assert _sha256(tmp_path / "pulled.bin") == digest


def test_dropped_connection_fails_the_first_rsync_then_the_retry_succeeds(loopback, tmp_path):
    digest = _random_file(tmp_path / "engine.plan", 8 << 20)
    remote = tmp_path / "remote"
    with DroppingProxy(loopback.port, drop_after_bytes=512 << 10) as proxy:
        first = loopback.rsync(tmp_path / "engine.plan", f"{loopback.host}:{remote}/",
                               port=proxy.port)
        assert first.returncode != 0, first.stdout
        assert (proxy.connections, proxy.dropped) == (1, 1)
        assert not (remote / "engine.plan").exists()
        second = loopback.rsync(tmp_path / "engine.plan", f"{loopback.host}:{remote}/",
                                port=proxy.port)
        assert second.returncode == 0, second.stderr
        assert (proxy.connections, proxy.dropped) == (2, 1)
    assert _sha256(remote / "engine.plan") == digest


def test_proxy_passes_small_connections_untouched(loopback):
    with DroppingProxy(loopback.port, drop_after_bytes=1 << 20, drops=1) as proxy:
        for _ in range(2):
            out = loopback.ssh("echo through", port=proxy.port)
            assert (out.returncode, out.stdout) == (0, "through\n"), out.stderr
        assert (proxy.connections, proxy.dropped) == (2, 0)


def test_kill_sessions_drops_open_connections(loopback):
    argv = [*loopback.ssh_argv(), loopback.host, "echo $$; exec sleep 30"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    remote_pid = None
    try:
        assert select.select([proc.stdout], [], [], 10)[0], "the ssh session never started"
        remote_pid = int(proc.stdout.readline())
        assert loopback.sessions()
        assert loopback.kill_sessions() >= 1
        assert proc.wait(timeout=5) == 255
        assert "closed by remote host" in proc.stderr.read()
        assert Path(f"/proc/{remote_pid}").exists()  # orphaned, as after a real network drop
    finally:
        proc.kill()
        proc.communicate()
        if remote_pid:
            os.kill(remote_pid, signal.SIGKILL)
    assert loopback.ssh("echo still").stdout == "still\n", loopback.read_log(tail=20)


def test_missing_openssh_skips_with_the_install_command(monkeypatch):
    monkeypatch.setitem(harness.BINARIES, "sshd", "/nonexistent/sshd")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception, match="apt-get install openssh-server"):
        harness.require_binaries()


# --- the stand-in device files and programs ------------------------------------------------------

def test_device_root_files(device_root):
    release = (device_root / "etc" / "nv_tegra_release").read_text().splitlines()
    assert release[0].startswith("# R36 (release), REVISION: 4.3, GCID: 38968081")
    assert release[1:] == ["# KERNEL_VARIANT: oot", "TARGET_USERSPACE_LIB_DIR=nvidia"]
    assert (device_root / "proc" / "device-tree" / "model").read_bytes() == MODEL.encode() + b"\0"
    meminfo = dict(line.split(":", 1) for line in
                   (device_root / "proc" / "meminfo").read_text().splitlines())
    assert meminfo["MemTotal"].split() == ["7802164", "kB"]
    assert meminfo["MemAvailable"].split() == ["5931420", "kB"]
    header = (device_root / "usr/include/aarch64-linux-gnu/NvInferVersion.h").read_text()
    for part, value in (("MAJOR", 10), ("MINOR", 3), ("PATCH", 0), ("BUILD", 30)):
        assert f"#define NV_TENSORRT_{part} {value} " in header


def test_trtexec_builds_then_runs(loopback, tmp_path):
    trtexec = loopback.trtexec
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not really onnx")
    build = _run(trtexec, f"--onnx={onnx}", f"--saveEngine={tmp_path / 'm.plan'}",
                 f"--exportLayerInfo={tmp_path / 'layers.json'}", "--skipInference")
    assert build.returncode == 0, build.stderr
    assert build.stdout.startswith(f"&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # {trtexec}")
    assert "[I] Engine built in 1.23 sec." in build.stdout
    assert (tmp_path / "m.plan").read_bytes() == b"STANDIN-ENGINE\n" + \
        hashlib.sha256(b"not really onnx").hexdigest().encode() + b"\n"
    assert set(json.loads((tmp_path / "layers.json").read_text())) == {"Layers", "Bindings"}
    run = _run(trtexec, f"--loadEngine={tmp_path / 'm.plan'}",
               f"--exportTimes={tmp_path / 'times.json'}")
    assert run.returncode == 0, run.stderr
    assert "=== Performance summary ===" in run.stdout
    assert "[10/03/2024-10:47:59] [I] Throughput: 130.298 qps\n" in run.stdout
    report = parse_trtexec_log(run.stdout + run.stderr)
    assert (report.status, report.tensorrt_version) == ("PASSED", "10.3.0")
    assert report.summary.throughput_qps == 130.298
    assert report.summary.gpu_compute.percentiles[99] == 12.9485
    times = parse_export_times(tmp_path / "times.json")
    assert times["iterations"] == 5 and times["compute_ms"]["median"] == 7.58404


def test_trtexec_failures(loopback, tmp_path):
    missing = _run(loopback.trtexec, f"--onnx={tmp_path / 'absent.onnx'}")
    assert missing.returncode == 1
    assert "[E] Failed to parse onnx file" in missing.stderr
    assert "&&&& FAILED TensorRT.trtexec [TensorRT v100300] # " in missing.stdout
    (tmp_path / "empty.onnx").touch()
    assert _run(loopback.trtexec, f"--onnx={tmp_path / 'empty.onnx'}").returncode == 1
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    with loopback.failing_builds():
        failed = _run(loopback.trtexec, f"--onnx={onnx}", f"--saveEngine={tmp_path / 'm.plan'}")
    assert failed.returncode == 1 and "[E] Error[10]" in failed.stderr
    assert not (tmp_path / "m.plan").exists()
    no_engine = _run(loopback.trtexec, f"--loadEngine={tmp_path / 'm.plan'}")
    assert no_engine.returncode == 1
    (tmp_path / "cut.plan").write_bytes(b"STANDIN-ENGINE\n0123")  # a truncated transfer
    truncated = _run(loopback.trtexec, f"--loadEngine={tmp_path / 'cut.plan'}")
    assert truncated.returncode == 1 and "Serialization" in truncated.stderr
    assert parse_trtexec_log(truncated.stdout + truncated.stderr).status == "FAILED"


def test_remove_trtexec_restores_it(loopback):
    with loopback.remove_trtexec() as away:
        assert not loopback.trtexec.exists() and away.exists()
        out = loopback.ssh('test -x "$TRTQ_DEVICE_ROOT/usr/src/tensorrt/bin/trtexec"')
        assert out.returncode == 1
    assert os.access(loopback.trtexec, os.X_OK)


def test_stand_ins_run_over_ssh(loopback, tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    out = loopback.ssh(f'"$TRTQ_DEVICE_ROOT/usr/src/tensorrt/bin/trtexec" --onnx={onnx} '
                       f"--saveEngine={tmp_path / 'm.plan'} 2>&1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert parse_trtexec_log(out.stdout).summary.throughput_qps == 130.298
    assert (tmp_path / "m.plan").is_file()


def test_tegrastats_logs_until_sigterm(device_root, tmp_path):
    logfile = tmp_path / "tegrastats.log"
    proc = subprocess.Popen([device_root / "usr" / "bin" / "tegrastats", "--interval", "100",
                             "--logfile", logfile])
    try:
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=2) == 0
    finally:
        proc.kill()
    samples = [parse_line(line) for line in logfile.read_text().splitlines()]
    assert len(samples) >= 2
    assert samples[0].rails["VDD_IN"].cur_mw == 4673 and samples[1].rails["VDD_IN"].cur_mw == 6120
    assert samples[0].ram_total_mb == 7620 and samples[0].timestamp is not None
    assert summarize(samples)["power_mw_mean"] > 4673
    assert not list((device_root / "standin" / "tegrastats").glob("*.pid"))


def test_tegrastats_stop_ends_the_others(device_root):
    tegrastats = device_root / "usr" / "bin" / "tegrastats"
    proc = subprocess.Popen([tegrastats, "--interval", "50"], stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 5)[0]
        assert "VDD_IN 4673mW/4673mW" in proc.stdout.readline()
        assert _run(tegrastats, "--stop").returncode == 0
        assert proc.wait(timeout=2) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_tegrastats_prints_to_stdout(device_root):
    proc = subprocess.Popen([device_root / "usr" / "bin" / "tegrastats", "--interval", "100"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.35)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=2)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert len(out.splitlines()) >= 2
