"""A corrupt model file can hang or crash the native readers under the loaders: HDF5 (an .h5,
or the weights inside a .keras zip), protobuf / TensorFlow's checkpoint reader (a SavedModel),
onnxruntime (an .onnx). FIELD_NOTES: one mutated .h5 hung h5py in reading an attribute. So the readers
read everything the loaders will read in a child process first; a crash or a hang there is a
refusal naming the file, and the loading in the caller's process only ever sees files that
read cleanly. The probe runs no code from the file and imports TensorFlow only for a SavedModel.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from groundfloor.errors import BadInput

PROBE_TIMEOUT = 90.0   # seconds: reading a sound model of any size the toolkit takes is far quicker


def probe_readers(path) -> None:
    """Read the file as the loaders will, in a child (the shared worker inside `edge export`).
    Exceptions are left to the loaders, which report them; only a crash or a hang is decided here."""
    from groundfloor.isolate import run_isolated
    r = run_isolated("export.model_probe:read_all", {"path": str(path)}, timeout=PROBE_TIMEOUT)
    if r.status == "crashed":
        raise BadInput(path, f"the model file reader crashed on it ({r.error}): the file is corrupt")
    if r.status == "timeout":
        raise BadInput(path, f"the model file reader did not finish in {PROBE_TIMEOUT:.0f} s: the file is corrupt")


def read_all(path: str) -> bool:
    """Child side: every attribute and dataset of the HDF5 content, or a SavedModel's protos and
    variables. Returns True; raises what the readers raise."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        _open_onnx(p)
    elif p.is_dir():
        _read_saved_model(p)
    elif zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            for name in z.namelist():
                data = z.read(name)
                if name.endswith(".h5"):
                    _read_h5(io.BytesIO(data))
    else:
        _read_h5(p)
    return True


def _read_h5(source):
    import h5py

    def visit(_, obj):
        for key in obj.attrs:
            obj.attrs[key]
        if isinstance(obj, h5py.Dataset):
            obj[()]

    with h5py.File(source, "r") as f:
        for key in f.attrs:
            f.attrs[key]
        f.visititems(visit)


def _open_onnx(path: Path):
    """The checker (by path: external data stays beside the file), then an onnxruntime session."""
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(str(path))
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _read_saved_model(folder: Path):
    from tensorflow.core.protobuf import saved_model_pb2
    import tensorflow as tf
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    index = folder / "variables" / "variables.index"
    if index.exists():
        reader = tf.train.load_checkpoint(str(folder / "variables" / "variables"))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
