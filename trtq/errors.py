"""The one family of user-facing errors.

A `TrtqError` says what is wrong and how to fix it in one line; the CLI prints it without a
traceback and exits with status 2. Programming errors stay ordinary exceptions.
"""


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
