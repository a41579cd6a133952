"""`trtq deploy` without a device: probe parsing, the JetPack table, ssh errors, the plan."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from trtq.cli import main
from trtq.deploy import plan
from trtq.deploy.probe import (
    assumed_facts,
    jetpack_for,
    l4t_for_jetpack,
    parse_l4t,
    parse_probe,
    probe_script,
)
from trtq.deploy.ssh import RemoteError, Retry, SshTarget
from trtq.engines.versions import parse_version
from trtq.errors import TrtqError

ORIN_NANO = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"


def _probe_output(**override) -> str:
    values = {"probe_version": "1", "arch": "aarch64", "model": ORIN_NANO,
              "l4t": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, "
                     "EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025",
              "tensorrt_header": "10.3.0.30", "trtexec": "/usr/src/tensorrt/bin/trtexec",
              "tegrastats": "/usr/bin/tegrastats", "nvcc": "", "cmake": "/usr/bin/cmake",
              "trtq": "", "rsync": "/usr/bin/rsync", "sha256sum": "/usr/bin/sha256sum",
              "mem_available_kib": "5931420", "mem_total_kib": "7802164",
              "disk_free_kib": "20480000", "probe_done": "1"}
    values.update(override)
    return "".join(f"{k}={v}\n" for k, v in values.items())


def test_l4t_and_jetpack_table():
    assert parse_l4t("# R36 (release), REVISION: 4.3, GCID: 1") == "36.4.3"
    assert parse_l4t("# R35 (release), REVISION: 4.1, GCID: 1") == "35.4.1"
    assert parse_l4t("garbage") is None
    assert jetpack_for("36.4.3") == ("6.2", "10.3.0")
    assert jetpack_for("36.4.4") == ("6.2.1", "10.3.0")
    assert jetpack_for("36.4.0") == ("6.1", "10.3.0")  # by the 36.4 prefix
    assert jetpack_for("36.3.0") == ("6.0", "8.6.2")
    assert jetpack_for("35.4.1") == ("5.1.2", "8.5.2")
    assert jetpack_for("99.1") == (None, None)
    assert l4t_for_jetpack("6.2") == "36.4.3"
    with pytest.raises(TrtqError, match="unknown JetPack '6.9'.*6.2"):
        l4t_for_jetpack("6.9")


def test_parse_probe_orin_nano():
    facts = parse_probe(_probe_output())
    assert facts.model == ORIN_NANO and facts.l4t == "36.4.3" and facts.jetpack == "6.2"
    assert facts.tensorrt == "10.3.0.30" and facts.tensorrt_source == "header"
    assert facts.dla is False  # the Orin Nano has no DLA
    assert facts.mem_available_mib == pytest.approx(5931420 / 1024)
    assert facts.disk_free_mib == pytest.approx(20000)
    assert facts.trt_version() == parse_version("10.3")


def test_parse_probe_without_headers_uses_the_jetpack_table():
    facts = parse_probe(_probe_output(tensorrt_header="", model="NVIDIA Jetson AGX Orin"))
    assert facts.tensorrt == "10.3.0" and facts.tensorrt_source == "jetpack"
    assert facts.dla is True


def test_parse_probe_refuses_a_cut_output():
    text = _probe_output().replace("probe_done=1\n", "")
    with pytest.raises(TrtqError, match="did not finish"):
        parse_probe(text)


def test_probe_script_is_posix_sh_and_reads_the_root(tmp_path):
    """The real probe.sh, run by dash/sh here against a stand-in root."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64\n")
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(ORIN_NANO.encode() + b"\0")
    (tmp_path / "proc/meminfo").write_text("MemTotal:  7802164 kB\nMemAvailable:  5931420 kB\n")
    done = subprocess.run(["sh", "-s", str(tmp_path / "nowhere/deep")], input=probe_script(),
                          capture_output=True, text=True, check=True,
                          env={"TRTQ_DEVICE_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"})
    facts = parse_probe(done.stdout)
    assert facts.model == ORIN_NANO and facts.jetpack == "6.2"
    assert facts.tensorrt == "10.3.0" and facts.tensorrt_source == "jetpack"
    assert facts.trtexec == "" and facts.mem_total_mib == pytest.approx(7802164 / 1024)
    assert facts.disk_free_mib > 0  # of the nearest existing folder


@pytest.mark.parametrize("stderr, needle, transient", [
    ("ssh: Could not resolve hostname jetsn: Name or service not known", "cannot resolve",
     False),
    ("ssh: connect to host 10.0.0.9 port 22: Connection refused", "nothing listens", False),
    ("nvidia@10.0.0.9: Permission denied (publickey).", "ssh-copy-id", False),
    ("Host key verification failed.", "ssh-keygen -R", False),
    ("Connection closed by 10.0.0.9 port 22", "failed or dropped", True),
    ("client_loop: send disconnect: Broken pipe", "failed or dropped", True),
])
def test_ssh_errors_are_explained(stderr, needle, transient):
    error = SshTarget("nvidia@10.0.0.9").explain(stderr, 255)
    assert needle in str(error) and error.transient is transient


def test_target_validation(tmp_path):
    with pytest.raises(TrtqError, match="--key .* does not exist"):
        SshTarget("a@b", key=str(tmp_path / "missing"))
    with pytest.raises(TrtqError, match="--host"):
        SshTarget("-oProxyCommand=evil")
    with pytest.raises(TrtqError, match="KEY=VALUE"):
        SshTarget("a@b", options=("ProxyJump",))
    argv = SshTarget("a@b", port=2222, options=("ProxyJump=gw",)).ssh_argv("true")
    assert argv[:3] == ["ssh", "-p", "2222"] and argv[-2:] == ["a@b", "true"]
    assert "ProxyJump=gw" in argv and "BatchMode=yes" in argv


def test_retry_gives_up_on_permanent_errors_at_once_and_retries_transient_ones():
    waits = []
    retry = Retry(attempts=3, first_wait_s=1, sleep=waits.append)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RemoteError("dropped", transient=True)
        return "ok"

    assert retry.run("x", flaky) == "ok" and waits == [1, 2]

    def refused():
        calls.append(1)
        raise RemoteError("refused")

    calls.clear()
    with pytest.raises(RemoteError, match="refused"):
        retry.run("x", refused)
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(RemoteError, match="gave up after 3 tries"):
        retry.run("x", lambda: (_ for _ in ()).throw(RemoteError("dropped", transient=True)))


def test_jobs_from_an_export_folder(tiny_onnx):
    jobs = plan.gather_jobs([tiny_onnx])
    assert [j.name for j in jobs] == ["encoder.fp16", "decoder.fp16"]
    decoder = jobs[1]
    assert decoder.profile == {"boxes": ((1, 4), (1, 4), (16, 4))}
    argv = plan.build_argv(decoder, parse_version("10.3"), "/usr/src/tensorrt/bin/trtexec", "",
                           plan.BenchSettings())
    assert argv[:3] == ["/usr/src/tensorrt/bin/trtexec", "--onnx=inputs/decoder.fp16.onnx",
                        "--saveEngine=engines/decoder.fp16.partial/decoder.fp16.engine"]
    assert "--fp16" in argv and "--maxShapes=boxes:16x4" in argv and "--skipInference" in argv
    bench = plan.bench_argv(decoder, parse_version("10.3"), "trtexec",
                            plan.BenchSettings(iterations=7, duration_s=2))
    assert "--loadEngine=engines/decoder.fp16.engine" in bench and "--shapes=boxes:1x4" in bench
    assert "--iterations=7" in bench and "--duration=2" in bench
    trtq = plan.build_argv(decoder, parse_version("10.3"), "x", "/usr/local/bin/trtq",
                           plan.BenchSettings(dla_core=0))
    assert trtq[:2] == ["/usr/local/bin/trtq", "build"] and trtq[-2:] == ["--dla", "0"]
    with pytest.raises(TrtqError, match="both be encoder.fp16"):
        plan.gather_jobs([tiny_onnx, tiny_onnx / "encoder.onnx"])
    with pytest.raises(TrtqError, match="does not exist"):
        plan.gather_jobs([tiny_onnx / "nope"])


def test_disk_need_counts_inputs_engines_and_reserve(tiny_onnx):
    jobs = plan.gather_jobs([tiny_onnx])
    need = plan.needed_mib(jobs, reserve_mib=100)
    onnx_mib = sum(j.onnx.stat().st_size for j in jobs) / 2**20
    assert need["inputs"] == pytest.approx(onnx_mib)
    assert need["engines"] == pytest.approx(2 * onnx_mib)
    assert need["total"] == pytest.approx(3 * onnx_mib + plan.LOG_MIB + 100)


def test_offline_dry_run_prints_every_command(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["deploy", "--host", "nvidia@orin-nano.local", "--onnx", str(tiny_onnx),
                 "--out", str(out), "--dry-run", "--jetpack", "6.2", "--module", ORIN_NANO])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "JetPack 6.2, L4T R36.4.3, TensorRT 10.3.0" in text and "DLA: none" in text
    commands = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(commands) == 9  # mkdir, push, verify, 2 builds, 2 benches, manifest, pull
    first = shlex.split(commands[0])
    assert first[0] == "ssh" and first[-2] == "nvidia@orin-nano.local"
    assert first[-1].startswith("mkdir -p trtq-deploy/bin")
    assert shlex.split(commands[1])[0] == "rsync" and "--partial-dir=.trtq-partial" in text
    assert "trtexec --onnx=inputs/encoder.fp16.onnx" in text
    assert "sh bin/trtq-device.sh bench decoder.fp16 /usr/bin/tegrastats" in text
    assert text.rstrip().endswith("nothing above was executed")


def test_offline_plan_needs_dry_run(tiny_onnx, tmp_path, capsys):
    assert main(["deploy", "--host", "a@b", "--onnx", str(tiny_onnx), "--out",
                 str(tmp_path), "--jetpack", "6.2"]) == 2
    assert "only goes with --dry-run" in capsys.readouterr().err


def test_assumed_facts_for_jetpack_5():
    facts = assumed_facts("5.1.2", "NVIDIA Jetson AGX Orin")
    assert facts.l4t == "35.4" and facts.tensorrt == "8.5.2" and facts.dla is True
    assert not facts.probed


def test_probe_reads_the_power_mode():
    facts = parse_probe(_probe_output(
        nvpmodel_q="NV Power Mode: MAXN_SUPER|2|",
        jetson_clocks_show="sudo: a password is required|"))
    mode = facts.power_mode
    assert mode["nvpmodel"] == {"mode": "MAXN_SUPER", "id": 2}
    assert mode["jetson_clocks"] is None and "needs root" in mode["jetson_clocks_reason"]
    locked = ("cpu0: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 "
              "CurrentFreq=1728000 IdleStates: WFI=0 c7=0 |GPU MinFreq=1020000000 "
              "MaxFreq=1020000000 CurrentFreq=1020000000|EMC MinFreq=204000000 "
              "MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1|")
    facts = parse_probe(_probe_output(jetson_clocks_show=locked))
    assert facts.power_mode["jetson_clocks"]["locked"] is True
    assert "nvpmodel not found" in facts.power_mode["nvpmodel_reason"]


def test_plugin_models_get_the_plugin_library_and_its_checks(tiny_onnx, tmp_path):
    from dataclasses import replace

    from trtq.deploy.deploy import DeployConfig, check_device

    job = replace(plan.gather_jobs([tiny_onnx])[1], logquant=True)
    argv = plan.build_argv(job, parse_version("10.3"), "trtexec", "", plan.BenchSettings())
    assert "--staticPlugins=plugin/lib/liblogquant_trt.so" in argv
    old = plan.bench_argv(job, parse_version("8.5.2"), "trtexec", plan.BenchSettings())
    assert "--plugins=plugin/lib/liblogquant_trt.so" in old  # 8.5 has no --staticPlugins
    cfg = DeployConfig(target=SshTarget("a@b"), onnx=(), out=tmp_path)
    facts = parse_probe(_probe_output(nvcc="/usr/local/cuda/bin/nvcc"))
    check_device(facts, [job], cfg)  # TensorRT 10.3 with nvcc and cmake: fine
    with pytest.raises(TrtqError, match="lacks nvcc"):
        check_device(parse_probe(_probe_output()), [job], cfg)
    jp60 = parse_probe(_probe_output(tensorrt_header="8.6.2.3", nvcc="/usr/bin/nvcc"))
    with pytest.raises(TrtqError, match="no IPluginV3.*--logquant onnx"):
        check_device(jp60, [job], cfg)
    with pytest.raises(TrtqError, match="no DLA cores"):
        check_device(facts, [job], replace(cfg, bench=plan.BenchSettings(dla_core=0)))
