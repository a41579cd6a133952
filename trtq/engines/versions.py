"""What each TensorRT version can do, from its version string alone (no import needed).

The facts and their sources are in ../shared/TENSORRT.md §1–2 and §4:
- explicit batch is a network-creation flag before 10.0 and the only mode from 10.0;
- strongly typed networks exist from 9.1 and are the only kind in 11.x, which also removed the
  FP16/INT8 builder flags and trtexec's `--fp16/--int8` (`--stronglyTyped` is still accepted
  there but does nothing);
- `IPluginRegistry.load_library` and trtexec's `--staticPlugins` exist from 8.6 (`--plugins`
  before);
- DLA: in every 8.x/9.x and 10.0–10.7, gone in 10.8–11.3, back in 11.4 (AGX Orin, JetPack ≥ 7.2.2);
- trtexec `--workspace=N` (8.x) became `--memPoolSize=workspace:N` (8.4+, the only form in 10.x).

TensorRT-RTX has its own numbering (1.x); `TrtVersion.rtx` marks it, and it behaves like a
strongly typed TensorRT without DLA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trtq.errors import BackendError
from trtq.tensorrt_flavour import is_rtx

# The TensorRT releases trtq is written against (TENSORRT.md §1.1).
SUPPORTED = ("8.5", "8.6", "10.x", "11.x")
_VERSION = re.compile(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?\s*$")


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT (or TensorRT-RTX, `rtx=True`) version: major.minor.patch."""

    major: int
    minor: int = 0
    patch: int = 0
    rtx: bool = False

    def __post_init__(self):
        if not self.rtx and (self.major, self.minor) < (8, 5):
            raise BackendError(f"TensorRT {self} is older than 8.5, which trtq needs "
                               f"(supported: {', '.join(SUPPORTED)}); upgrade TensorRT or "
                               "JetPack (JetPack 5.1 ships 8.5.2)")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def label(self) -> str:
        return f"TensorRT-RTX {self}" if self.rtx else f"TensorRT {self}"

    @property
    def needs_explicit_batch_flag(self) -> bool:
        return not self.rtx and self.major < 10

    @property
    def has_strongly_typed(self) -> bool:
        return self.rtx or (self.major, self.minor) >= (9, 1)

    @property
    def always_strongly_typed(self) -> bool:
        """No weak typing at all: TensorRT 11.x and TensorRT-RTX."""
        return self.rtx or self.major >= 11

    @property
    def has_precision_flags(self) -> bool:
        """BuilderFlag.FP16/INT8 and trtexec --fp16/--int8 (removed in 11.x; never on RTX)."""
        return not self.always_strongly_typed

    @property
    def has_load_library(self) -> bool:
        """`IPluginRegistry.load_library` and trtexec `--staticPlugins` (8.6+)."""
        return self.rtx or (self.major, self.minor) >= (8, 6)

    @property
    def has_dla(self) -> bool:
        """Whether this release can build for a DLA core at all (the device decides the rest)."""
        if self.rtx:
            return False
        if self.major >= 11:
            return self.minor >= 4
        return self.major < 10 or self.minor <= 7

    @property
    def trtexec_has_skip_inference(self) -> bool:
        """`--skipInference` (8.6+); 8.5 spells it `--buildOnly`."""
        return self.rtx or (self.major, self.minor) >= (8, 6)

    def dla_refusal(self) -> str | None:
        """Why DLA cannot be used with this release, or None."""
        if self.has_dla:
            return None
        if self.rtx:
            return f"{self.label} has no DLA support; build with TensorRT on the Jetson"
        return (f"{self.label} has no DLA support (10.7 was the last 10.x with DLA; 11.0–11.3 "
                "have none; 11.4+ has it on AGX Orin with JetPack 7.2.2+); drop --dla or build "
                "with JetPack 6's TensorRT 10.3")


def parse_version(text: str, rtx: bool = False) -> TrtVersion:
    """'10.3', '10.3.0.30', 'v100300' (trtexec banner) or '8.6.1' → TrtVersion."""
    text = str(text).strip()
    banner = re.fullmatch(r"v(\d)(\d)(\d{2})|v(\d{2})(\d{2})(\d{2})", text)
    if banner:  # trtexec's banner: v8601 is 8.6.1, v100300 is 10.3.0
        return TrtVersion(*(int(g) for g in banner.groups() if g is not None), rtx=rtx)
    match = _VERSION.match(text)
    if not match:
        raise BackendError(f"cannot read TensorRT version {text!r}; write it as MAJOR.MINOR "
                           "(e.g. 8.6, 10.3 or 11.4)")
    major, minor, patch = (int(g or 0) for g in match.groups()[:3])
    return TrtVersion(major, minor, patch, rtx=rtx)


def module_version(trt) -> TrtVersion:
    """The version of an imported `tensorrt` or TensorRT-RTX module."""
    return parse_version(trt.__version__, rtx=is_rtx(trt))
