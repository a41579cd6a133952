"""ONNX files of any size: models over protobuf's 2 GB limit keep their weights in one external
data file beside the graph (`encoder.onnx` + `encoder.onnx.data`).

A serialized ONNX protobuf cannot exceed 2 GiB, so SAM ViT-H's FP32 image encoder (632 M
parameters, 2.5 GB) cannot be one file. Above `EXTERNAL_DATA_BYTES` of initializers trtq writes
every tensor larger than 1 KiB into `<name>.onnx.data` (ONNX's external-data format, which
onnxruntime and TensorRT's parser read from the graph's folder), and everything that reads an
export works on the graph without loading the weights (`Graph(model, base_dir=...)` reads single
constants from the data file on demand).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx

EXTERNAL_DATA_BYTES = 1536 << 20  # below protobuf's 2 GiB, leaving room for the graph itself


def data_file_name(onnx_name: str) -> str:
    """Where a graph named `onnx_name` keeps its external weights."""
    return f"{onnx_name}.data"


def module_bytes(module) -> int:
    """Bytes of a PyTorch module's parameters and buffers (what its ONNX initializers hold)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Bytes of a loaded model's initializers (raw or typed data)."""
    total = 0
    for init in model.graph.initializer:
        if init.HasField("raw_data"):
            total += len(init.raw_data)
        else:
            total += 4 * max(len(init.float_data), len(init.int32_data)) + \
                8 * max(len(init.int64_data), len(init.double_data))
    return total


def needs_external_data(model: onnx.ModelProto) -> bool:
    return initializer_bytes(model) > EXTERNAL_DATA_BYTES


def save(model: onnx.ModelProto, path: str | os.PathLike, final_name: str,
         external: bool | None = None) -> str | None:
    """Write `model` to `path` (a temporary name of the file that will be called `final_name`);
    large models (or any, with `external`) put their weights into `data_file_name(final_name)`
    beside it. Returns that data file's name, or None when the model is one file."""
    path = Path(path)
    if not (needs_external_data(model) if external is None else external):
        onnx.save(model, str(path))
        return None
    data = data_file_name(final_name)
    (path.parent / data).unlink(missing_ok=True)  # the writer appends
    onnx.save_model(model, str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=data, size_threshold=1024)
    os.chmod(path.parent / data, 0o644)  # like every artifact: readable where it is copied
    return data


def external_data_files(model: onnx.ModelProto) -> set[str]:
    """The external data files a graph (loaded without its data) refers to."""
    files = set()
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            files |= {e.value for e in init.external_data if e.key == "location"}
    return files


def load_graph(path: str | os.PathLike) -> onnx.ModelProto:
    """The graph of an ONNX file without its external weights (cheap for any size)."""
    return onnx.load(str(path), load_external_data=False)


def torch_export_large(export, path: Path, final_name: str) -> str:
    """Run `export(file)` (a torch.onnx.export into `file`) for a model over the protobuf limit:
    the exporter writes loose per-tensor files into a private folder, which are gathered into
    one data file beside `path`. Returns the data file's name."""
    scratch = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=path.parent))
    try:
        export(scratch / "model.onnx")
        model = onnx.load(str(scratch / "model.onnx"))  # with the loose external files
        return save(model, path, final_name, external=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
