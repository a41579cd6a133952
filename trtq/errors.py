"""The one family of user-facing errors.

A `TrtqError` says what is wrong and how to fix it in one line; the CLI prints it without a
traceback and exits with status 2. Programming errors stay ordinary exceptions (the CLI
reports them in one line too, with exit status 3, and shows the traceback with -v).
"""

import errno


class TrtqError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""


class CheckpointError(TrtqError):
    """A checkpoint is missing, corrupt, or does not match the model."""


class DataError(TrtqError):
    """An image, dataset or annotation file cannot be used."""


class ArtifactError(TrtqError):
    """An artifact (ONNX, engine, report) is missing, invalid, or would be overwritten."""


class BackendError(TrtqError):
    """An optional backend (onnxruntime, TensorRT, CUDA) is missing or refused the input."""


class CalibrationError(TrtqError):
    """Calibration could not produce a usable quantizer (or a quant state does not fit)."""


class NonFiniteError(CalibrationError):
    """NaN or Inf in a tensor being calibrated. The quantizer fills in `layer` and the
    calibration loop `image`, so the message names both."""

    def __init__(self, bad: int, total: int, what: str) -> None:
        super().__init__(what)
        self.bad, self.total, self.what = bad, total, what
        self.layer: str | None = None
        self.image: str | None = None

    def __str__(self) -> str:
        where = f" on calibration image {self.image}" if self.image else ""
        return (f"{self.layer or 'a quantizer'}: {self.bad} of {self.total} {self.what} values "
                f"are NaN or Inf{where}; no range can be calibrated from them (check the "
                "checkpoint's weights and that image)")


_OS_HINTS = {
    errno.ENOSPC: "free some disk space or choose another --out",
    errno.EDQUOT: "free some of your disk quota or choose another --out",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "that file system is read-only; choose another --out",
    errno.ENOTDIR: "a part of that path is a file, not a folder; check the path",
    errno.EISDIR: "that is a folder; give a file path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "shorten the path",
}


def one_line(text: object) -> str:
    """`text` (an exception's message) on one line."""
    return " ".join(str(text).split())


def describe_os_error(exc: OSError) -> str:
    """An operating-system error on a user's path as one line with the fix."""
    what = exc.strerror or one_line(exc) or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    hint = _OS_HINTS.get(exc.errno, "check the path and try again")
    return f"{what}{where}; {hint}"
