"""PyTorch programs: an ExportedProgram (.pt2, torch.export.save) or TorchScript (.pt,
torch.jit.save), exported to ONNX in memory with torch's own exporter, read like any ONNX
graph, and kept as torch callables to verify the rebuild against. torch is an optional extra
(pip install lstm-edge[torch]). A pickled module (torch.save(model)) is refused: unpickling
it runs code from the file."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
import zipfile

import numpy as np

from groundfloor.errors import BadInput

_EXPORT_HINT = ("export it instead: torch.export.save(torch.export.export(model, (x,)), 'model.pt2') "
                "or torch.onnx.export(model, (x,), 'model.onnx')")
_PICKLE_HINT = "pickled whole module (torch.save(model)): loading it runs code from the file; " + _EXPORT_HINT


def _torch(path):
    try:
        import torch
    except ImportError:
        raise BadInput(path, "a PyTorch program needs torch: pip install 'lstm-edge[torch]' "
                             "(or export the model to .onnx, which needs no torch)") from None
    return torch


def _members(path):
    if not zipfile.is_zipfile(path):
        raise BadInput(path, "not a PyTorch zip archive (a legacy torch.save file?); " + _EXPORT_HINT)
    with zipfile.ZipFile(path) as z:
        return {n: z.getinfo(n).file_size for n in z.namelist()}


# -- .pt2 ------------------------------------------------------------------------------------
def load_exported(path, data_shape=None, trust_code=False):
    torch = _torch(path)
    _check_pt2(path, torch, trust_code)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            program = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001 - one line
        raise BadInput(path, f"torch.export.load failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}")
    args = program.example_inputs[0] if program.example_inputs else ()
    if len(args) != 1 or not hasattr(args[0], "shape"):
        raise BadInput(path, f"the program takes {len(args)} inputs: export feeds one, the windows")
    example = tuple(int(d) for d in args[0].shape)
    module = program.module()
    return _rebuild(path, torch, program, module, [example], data_shape, dynamo=True)


def _check_pt2(path, torch, trust_code):
    """Before torch.export.load: the archive's schema is one this torch reads, and nothing in it
    would be unpickled (torch.export.load unpickles pickled weights, constants and objects)."""
    members = _members(path)
    models = [n for n in members if "/models/" in n and n.endswith(".json")]
    if not models or not any(n.endswith("/archive_format") for n in members):
        raise BadInput(path, "not a torch.export archive (.pt2 from torch.export.save)")
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read(models[0]))
        _check_schema(path, torch, meta)
        if trust_code:
            return
        for n in members:
            if n.endswith("_config.json") and ("/data/weights/" in n or "/data/constants/" in n):
                for fqn, entry in json.loads(z.read(n)).get("config", {}).items():
                    pickled = entry.get("use_pickle") or not str(entry.get("path_name", "")).startswith(
                        ("weight_", "tensor_"))
                    if pickled:
                        raise BadInput(path, f"'{fqn}' is stored pickled: loading it would run code from "
                                             "the file; pass --trust-model-code if you trust the file")
            if n.endswith((".so", ".cpp", ".pkl")):
                raise BadInput(path, f"'{n}' is compiled code or a pickle: loading it would run it; "
                                     "pass --trust-model-code if you trust the file")
        sample = [n for n in members if "/data/sample_inputs/" in n]
        for n in sample:   # torch falls back to a full unpickle when the safe load fails
            try:
                torch.load(io.BytesIO(z.read(n)), weights_only=True)
            except Exception:  # noqa: BLE001
                raise BadInput(path, f"'{n}' is not plain tensors: loading it would unpickle objects; "
                                     "pass --trust-model-code if you trust the file") from None


def _check_schema(path, torch, meta):
    from torch._export.serde.schema import SCHEMA_VERSION
    saved = meta.get("schema_version") or {}
    saved_v = (int(saved.get("major", 0)), int(saved.get("minor", 0)))
    saved_torch = meta.get("torch_version", "?")
    newer_torch = _version_tuple(saved_torch) > _version_tuple(torch.__version__)
    if saved_v[0] != SCHEMA_VERSION[0] or saved_v > tuple(SCHEMA_VERSION) or newer_torch:
        raise BadInput(path, f"saved by torch {saved_torch} (export schema {saved_v[0]}.{saved_v[1]}), newer "
                             f"than the installed torch {torch.__version__} (schema {SCHEMA_VERSION[0]}."
                             f"{SCHEMA_VERSION[1]}): re-save it with torch {torch.__version__.split('+')[0]} "
                             "or install the newer torch")


def _version_tuple(v):
    parts = []
    for p in str(v).split("+")[0].split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


# -- TorchScript -----------------------------------------------------------------------------
def load_torchscript(path, data_shape=None, trust_code=False):
    members = _members(path)
    if not any("/code/" in n for n in members):
        what = "state_dict or pickled object" if not trust_code else "pickled object"
        raise BadInput(path, f"a {what}, not TorchScript: {_PICKLE_HINT}")
    torch = _torch(path)
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001
        raise BadInput(path, f"torch.jit.load failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}")
    features = _first_input_features(module)
    from export.importers import LINT_TIMESTEPS
    steps = data_shape[1] if data_shape and data_shape[1] else LINT_TIMESTEPS
    if data_shape and data_shape[2]:
        features = data_shape[2]
    if features is None:
        raise BadInput(path, "cannot tell the TorchScript module's input features without data (--data)")
    # TorchScript keeps no input shape: batch first, then sequence first
    examples = [(1, steps, features), (steps, 1, features)]
    return _rebuild(path, torch, module, module, examples, data_shape, dynamo=False)


def _first_input_features(module):
    for name, p in module.named_parameters():
        if name.endswith("weight_ih_l0") or p.dim() == 2:
            return int(p.shape[1])
    return None


# -- both ------------------------------------------------------------------------------------
def _refuse_unfaithful(module):
    """Settings torch's exporters do not write faithfully, found by their weights' names."""
    from export.importers.onnx_ir import Refusal
    for name, _ in module.named_parameters():
        if "weight_hr_l" in name:   # nn.LSTM(proj_size=...): the dynamo exporter writes a wrong LSTM
            raise Refusal(name.rsplit(".", 1)[0] or "lstm", "LSTM", "proj_size (projected hidden state): "
                          "Keras LSTM has no projection")


def _rebuild(path, torch, exportable, module, examples, data_shape, dynamo):
    """The ONNX graph torch exports for the first example shape the reader accepts."""
    from export.importers import Source
    from export.importers.onnx_graph import read_graph
    from export.importers.onnx_ir import Refusal
    from export.importers.keras_build import build_keras
    from export.importers.onnx_source import keras_name
    _refuse_unfaithful(module)
    refusal = None
    for shape in examples:
        model_proto = _to_onnx(path, torch, exportable, shape, dynamo)
        try:
            graph = read_graph(model_proto, data_shape or shape)
        except Refusal as r:
            refusal = refusal or r
            continue
        keras_model = build_keras(graph, name=keras_name(path.stem))
        notes = [f"exported to ONNX in memory by torch.onnx.export(dynamo={dynamo}); input "
                 f"{'[1, T, F]' if graph.batch_first else '[T, 1, F]'}"]
        return keras_model, Source("torch", _runner(torch, module, graph), notes)
    raise refusal


def _to_onnx(path, torch, exportable, shape, dynamo):
    import logging
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)   # "torchvision is not installed" lines
    x = torch.zeros(shape)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                return torch.onnx.export(exportable, (x,), dynamo=True, verbose=False).model_proto
            buf = io.BytesIO()
            torch.onnx.export(exportable, (x,), buf, dynamo=False)
            import onnx
            return onnx.load_from_string(buf.getvalue())
    except Exception as e:  # noqa: BLE001 - one line
        raise BadInput(path, f"torch.onnx.export of the program failed: {type(e).__name__}: "
                             f"{' '.join(str(e).split())[:160]}")


def _runner(torch, module, graph):
    def run(x):
        outs = []
        with torch.no_grad():
            for window in np.asarray(x, np.float32):
                feed = window[None] if graph.batch_first else window[:, None, :]
                y = module(torch.from_numpy(np.ascontiguousarray(feed)))
                y = y.detach().numpy()
                outs.append(np.transpose(y, graph.output_perm).reshape(graph.output_shape))
        return np.concatenate(outs)
    return run
