"""Child side of the PyTorch importer (run through groundfloor.isolate.run_isolated): torch.export.load
/ torch.jit.load, torch.onnx.export and the torch model's outputs, so a corrupt or hostile .pt2 / .pt
can crash only this process. Everything goes back as plain data: ONNX files, .npz arrays, JSON."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
import zipfile

import numpy as np

from groundfloor.errors import BadInput


def export_program(path, kind, out_dir, data_shape=None, trust_code=False, lint_timesteps=16):
    """ONNX files torch exports for each candidate window shape (TorchScript keeps no input shape:
    batch first, then sequence first), the parameter names, and how the initial states are passed.
    {"error": one line} for a file that cannot be loaded or exported."""
    try:
        torch, program = _open(path, kind, trust_code)
        shapes = program.window_shapes(data_shape, lint_timesteps)
        candidates = []
        for i, shape in enumerate(shapes):   # a wrong layout guess may fail to export: the next one is tried
            file = f"{out_dir}/candidate_{i}.onnx"
            try:
                proto = _to_onnx(torch, program, shape)
            except BadInput as e:
                candidates.append({"shape": list(shape), "error": e.problem})
                continue
            with open(file, "wb") as f:
                f.write(proto.SerializeToString())
            candidates.append({"shape": list(shape), "file": file})
        return {"candidates": candidates, "param_names": [n for n, _ in program.module.named_parameters()],
                "dynamo": program.dynamo, "states": program.state_kind}
    except BadInput as e:
        return {"error": e.problem}


def run_program(path, kind, x_npz, out_npz, batch_first, trust_code=False):
    """The torch model on each [T, F] window of x (batch 1, zero initial states where it takes
    them): its raw outputs stacked [N, ...] into out_npz."""
    try:
        torch, program = _open(path, kind, trust_code)
        x = np.load(x_npz)["x"]
        outs = []
        with torch.no_grad():
            for window in x:
                feed = window[None] if batch_first else window[:, None, :]
                y = program.module(torch.from_numpy(np.ascontiguousarray(feed)), *program.zero_states())
                outs.append(y.detach().numpy())
        np.savez(out_npz, y=np.stack(outs))
        return {}
    except BadInput as e:
        return {"error": e.problem}


class _Program:
    """A loaded program: what torch.onnx.export takes, the callable module, and the initial-state
    arguments after the window (None, "tensor" for a GRU's h0, "tuple" for an LSTM's (h0, c0))."""

    def __init__(self, torch, exportable, module, dynamo, state_shapes, state_kind, example=None):
        self.torch, self.exportable, self.module, self.dynamo = torch, exportable, module, dynamo
        self.state_shapes, self.state_kind, self.example = state_shapes, state_kind, example

    def zero_states(self):
        zeros = [self.torch.zeros(s) for s in self.state_shapes]
        return () if self.state_kind is None else (zeros[0],) if self.state_kind == "tensor" else (tuple(zeros),)

    def window_shapes(self, data_shape, lint_timesteps):
        if self.example is not None:
            return [self.example]
        steps = data_shape[1] if data_shape and data_shape[1] else lint_timesteps
        features = data_shape[2] if data_shape and data_shape[2] else _first_input_features(self.module)
        if features is None:
            raise BadInput(None, "cannot tell the TorchScript module's input features without data (--data)")
        return [(1, steps, features), (steps, 1, features)]


def _open(path, kind, trust_code):
    try:
        import torch
    except ImportError:
        raise BadInput(None, "a PyTorch program needs torch: pip install 'lstm-edge[torch]'") from None
    torch.set_num_threads(1)
    return torch, _OPENERS[kind](torch, path, trust_code)


def _one_line(what, e):
    return BadInput(None, f"{what} failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}")


# -- .pt2 ------------------------------------------------------------------------------------
def _open_exported(torch, path, trust_code):
    _check_pt2(path, torch, trust_code)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            program = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001 - one line
        raise _one_line("torch.export.load", e) from None
    args, kwargs = program.example_inputs if program.example_inputs else ((), {})
    if not args or not hasattr(args[0], "shape") or kwargs:
        raise BadInput(None, f"the program takes {len(args)} positional and {len(kwargs or {})} keyword inputs: "
                             "export feeds one, the windows (and zeros for h0 / c0)")
    kind, shapes = _state_args(args[1:])
    return _Program(torch, program, program.module(), True, shapes, kind,
                    example=tuple(int(d) for d in args[0].shape))


def _state_args(extra):
    """(kind, shapes) of the arguments after the window: none, h0, or (h0, c0), each batch 1."""
    if not extra:
        return None, []
    state = extra[0]
    tensors = list(state) if isinstance(state, (tuple, list)) else [state]
    if len(extra) != 1 or len(tensors) not in (1, 2) or not all(getattr(t, "ndim", 0) == 3 for t in tensors):
        raise BadInput(None, f"the program takes {1 + len(extra)} inputs: export feeds one, the windows; "
                             "a second may only be the initial state h0 or (h0, c0) [layers * directions, 1, H]")
    kind = "tuple" if isinstance(state, (tuple, list)) else "tensor"
    return kind, [(int(t.shape[0]), 1, int(t.shape[2])) for t in tensors]


def _check_pt2(path, torch, trust_code):
    """Before torch.export.load: the archive's schema is one this torch reads, and nothing in it
    would be unpickled (torch.export.load unpickles pickled weights, constants and objects)."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.getinfo(n).file_size for n in z.namelist()}
        models = [n for n in members if "/models/" in n and n.endswith(".json")]
        if not models or not any(n.endswith("/archive_format") for n in members):
            raise BadInput(None, "not a complete torch.export archive (truncated, or not a .pt2 from torch.export.save)")
        try:
            meta = json.loads(z.read(models[0]))
        except Exception as e:  # noqa: BLE001 - a damaged member (bad CRC, not JSON)
            raise _one_line(f"reading '{models[0]}'", e) from None
        _check_schema(torch, meta)
        if not trust_code:
            _refuse_pickles(torch, z, members)


def _refuse_pickles(torch, z, members):
    for n in members:
        if n.endswith("_config.json") and ("/data/weights/" in n or "/data/constants/" in n):
            for fqn, entry in json.loads(z.read(n)).get("config", {}).items():
                pickled = entry.get("use_pickle") or not str(entry.get("path_name", "")).startswith(
                    ("weight_", "tensor_"))
                if pickled:
                    raise BadInput(None, f"'{fqn}' is stored pickled: loading it would run code from "
                                         "the file; pass --trust-model-code if you trust the file")
        if n.endswith((".so", ".cpp", ".pkl")):
            raise BadInput(None, f"'{n}' is compiled code or a pickle: loading it would run it; "
                                 "pass --trust-model-code if you trust the file")
    for n in [n for n in members if "/data/sample_inputs/" in n]:   # torch falls back to a full unpickle
        try:
            torch.load(io.BytesIO(z.read(n)), weights_only=True)
        except Exception:  # noqa: BLE001
            raise BadInput(None, f"'{n}' is not plain tensors: loading it would unpickle objects; "
                                 "pass --trust-model-code if you trust the file") from None


def _check_schema(torch, meta):
    from torch._export.serde.schema import SCHEMA_VERSION
    saved = meta.get("schema_version") or {}
    saved_v = (int(saved.get("major", 0)), int(saved.get("minor", 0)))
    saved_torch = meta.get("torch_version", "?")
    newer_torch = _version_tuple(saved_torch) > _version_tuple(torch.__version__)
    if saved_v[0] != SCHEMA_VERSION[0] or saved_v > tuple(SCHEMA_VERSION) or newer_torch:
        raise BadInput(None, f"saved by torch {saved_torch} (export schema {saved_v[0]}.{saved_v[1]}), newer "
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
def _open_torchscript(torch, path, trust_code):
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001
        raise _one_line("torch.jit.load", e) from None
    required = [a for a in module.forward.schema.arguments[1:] if not a.has_default_value()]
    kind = None
    if len(required) > 1:   # the window, then the initial state
        types = [str(a.type) for a in required]
        kind = {("Tensor",): "tensor", ("Tuple[Tensor, Tensor]",): "tuple"}.get(tuple(types[1:]))
        if kind is None:
            raise BadInput(None, f"forward() takes ({', '.join(types)}): export feeds one input, the windows; "
                                 "a second may only be the initial state h0 (Tensor) or (h0, c0)")
    shapes = _state_shapes(module, kind)
    return _Program(torch, module, module, False, shapes, kind)


def _state_shapes(module, kind):
    """[layers * directions, 1, H] of the one nn.LSTM / nn.GRU's initial states, from its weights
    (TorchScript keeps no example inputs to read them from)."""
    if kind is None:
        return []
    hh = {n.rsplit(".weight_hh_l", 1)[0]: p for n, p in module.named_parameters() if ".weight_hh_l" in f".{n}"}
    if len(hh) != 1:
        raise BadInput(None, f"forward() takes an initial state and the module has {len(hh)} recurrent layers: "
                             "cannot tell the state's shape (export it with torch.export, which keeps it)")
    prefix = next(iter(hh))
    names = [n for n, _ in module.named_parameters() if n.startswith(prefix) and "weight_hh_l" in n]
    rows = len(names)   # one per layer and direction (weight_hh_l{k} and weight_hh_l{k}_reverse)
    units = int(next(iter(hh.values())).shape[1])
    return [(rows, 1, units)] * (2 if kind == "tuple" else 1)


def _first_input_features(module):
    for name, p in module.named_parameters():
        if name.endswith("weight_ih_l0") or p.dim() == 2:
            return int(p.shape[1])
    return None


_OPENERS = {"torch_export": _open_exported, "torchscript": _open_torchscript}


def _to_onnx(torch, program, shape):
    import logging
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)   # "torchvision is not installed" lines
    args = (torch.zeros(shape), *program.zero_states())
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if program.dynamo:
                return torch.onnx.export(program.exportable, args, dynamo=True, verbose=False).model_proto
            buf = io.BytesIO()
            torch.onnx.export(program.exportable, args, buf, dynamo=False)
            import onnx
            return onnx.load_from_string(buf.getvalue())
    except Exception as e:  # noqa: BLE001 - one line
        raise _one_line("torch.onnx.export of the program", e) from None
