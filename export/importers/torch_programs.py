"""PyTorch programs: an ExportedProgram (.pt2, torch.export.save) or TorchScript (.pt,
torch.jit.save), exported to ONNX with torch's own exporter, read like any ONNX graph, and
verified against torch's own outputs. torch is an optional extra (pip install lstm-edge[torch]).
Every torch call that reads the file (torch.export.load, torch.jit.load, the export, running the
model) happens in a child process (export/importers/torch_child.py): a corrupt or hostile file
crashes only that child. A pickled module (torch.save(model)) is refused: unpickling it runs
code from the file."""
from __future__ import annotations

import tempfile
import zipfile
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput

TORCH_TIMEOUT = 300.0   # seconds: import torch, load, export a small model (measured: a few seconds)
# A fresh process for each torch call: torch stays out of the shared TensorFlow worker
_FRESH = {"EDGE_TORCH_CHILD": "1"}
_EXPORT_HINT = ("export it instead: torch.export.save(torch.export.export(model, (x,)), 'model.pt2') "
                "or torch.onnx.export(model, (x,), 'model.onnx')")
_PICKLE_HINT = "pickled whole module (torch.save(model)): loading it runs code from the file; " + _EXPORT_HINT


def _need_torch(path):
    if find_spec("torch") is None:
        raise BadInput(path, "a PyTorch program needs torch: pip install 'lstm-edge[torch]' "
                             "(or export the model to .onnx, which needs no torch)")


def _members(path):
    """Member names of the zip archive (read here: Python's zipfile runs nothing from the file)."""
    hint = ("not a readable zip archive (truncated or corrupt): a .pt2 is the zip torch.export.save writes"
            if path.suffix.lower() == ".pt2" else "not a PyTorch zip archive (a legacy torch.save file?); "
            + _EXPORT_HINT)
    if not zipfile.is_zipfile(path):
        raise BadInput(path, hint)
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadInput(path, f"{hint} ({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None


def load_exported(path, data_shape=None, trust_code=False):
    _members(path)
    return _load(path, "torch_export", data_shape, trust_code)


def load_torchscript(path, data_shape=None, trust_code=False):
    if not any("/code/" in n for n in _members(path)):
        what = "state_dict or pickled object" if not trust_code else "pickled object"
        raise BadInput(path, f"a {what}, not TorchScript: {_PICKLE_HINT}")
    return _load(path, "torchscript", data_shape, trust_code)


def _child(path, target, kwargs, what):
    """The child's value; BadInput (one line naming the file) when it crashed, hung or refused."""
    from groundfloor.isolate import run_isolated
    r = run_isolated(f"export.importers.torch_child:{target}", kwargs, timeout=TORCH_TIMEOUT, env=_FRESH)
    if r.status in ("crashed", "timeout"):
        raise BadInput(path, f"torch {r.status} {what} ({r.error}): the file is corrupt or not a torch program")
    if not r.ok:
        raise BadInput(path, f"{what} failed: {r.error}")
    if "error" in r.value:
        raise BadInput(path, r.value["error"])
    return r.value


def _load(path, kind, data_shape, trust_code):
    """The ONNX graph torch exports for the first candidate window shape the reader accepts."""
    import onnx
    from export.importers import LINT_TIMESTEPS, Source
    from export.importers.keras_build import build_keras
    from export.importers.onnx_graph import read_graph
    from export.importers.onnx_ir import Refusal
    from export.importers.onnx_source import keras_name
    _need_torch(path)
    with tempfile.TemporaryDirectory(prefix="edge-torch-") as tmp:
        value = _child(path, "export_program", {"path": str(path), "kind": kind, "out_dir": tmp,
                                                "data_shape": list(data_shape) if data_shape else None,
                                                "trust_code": trust_code, "lint_timesteps": LINT_TIMESTEPS},
                       "loading and exporting it")
        _refuse_unfaithful(value["param_names"])
        protos = [(tuple(c["shape"]), onnx.load(c["file"]) if "file" in c else c["error"])
                  for c in value["candidates"]]
    refusal = None
    for shape, proto in protos:
        if isinstance(proto, str):   # torch could not export it at this window shape
            continue
        try:
            graph = read_graph(proto, data_shape or shape)
        except Refusal as r:
            refusal = refusal or r
            continue
        keras_model = build_keras(graph, name=keras_name(path.stem))
        layout = "[1, T, F]" if graph.batch_first else "[T, 1, F]"
        notes = [f"exported to ONNX by torch.onnx.export(dynamo={value['dynamo']}) in a child process; "
                 f"input {layout}", *graph.notes]
        return keras_model, Source("torch", _runner(path, kind, trust_code, graph), notes)
    if refusal is not None:
        raise refusal
    raise BadInput(path, next(p for _, p in protos if isinstance(p, str)))


def _refuse_unfaithful(param_names):
    """Settings torch's exporters do not write faithfully, found by their weights' names."""
    from export.importers.onnx_ir import Refusal
    for name in param_names:
        if "weight_hr_l" in name:   # nn.LSTM(proj_size=...): the dynamo exporter writes a wrong LSTM
            raise Refusal(name.rsplit(".", 1)[0] or "lstm", "LSTM", "proj_size (projected hidden state): "
                          "Keras LSTM has no projection")


def _runner(path, kind, trust_code, graph):
    """[N, T, F] windows -> torch's outputs in the rebuild's layout, computed in a child process
    (zeros for the initial states where the program takes them, as the rebuild starts from zero)."""
    def run(x):
        with tempfile.TemporaryDirectory(prefix="edge-torch-") as tmp:
            x_npz, out_npz = Path(tmp) / "x.npz", Path(tmp) / "y.npz"
            np.savez(x_npz, x=np.asarray(x, np.float32))
            _child(path, "run_program", {"path": str(path), "kind": kind, "x_npz": str(x_npz),
                                         "out_npz": str(out_npz), "batch_first": graph.batch_first,
                                         "trust_code": trust_code}, "running it")
            with np.load(out_npz) as z:
                ys = z["y"]
        return np.concatenate([np.transpose(y, graph.output_perm).reshape(graph.output_shape) for y in ys])
    return run
