"""Check a model file before a native runtime sees it: a corrupt or hostile .tflite can kill the
process inside LiteRT or TFLite Micro, so nothing reaches them unverified.

    verify_tflite(path)   structure (every offset and vector in bounds: the pure-Python
                          flatbuffer reader raises instead of reading past the end), then
                          indices (op codes, tensors, buffers, subgraphs) in range, shapes and
                          dtypes known, constant buffers as long as their shape says,
                          quantization arrays consistent; BadInput naming what is wrong
    verify_onnx(path)     onnx.checker, initializers as long as their dims say, external data
                          only from inside the model's folder
    verify_hash(path)     the sha256 the folder's manifest.json records for this file
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.fileio import sha256_file

_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
             "INT8": 1, "FLOAT64": 8, "UINT32": 4, "UINT16": 2, "COMPLEX64": 8, "COMPLEX128": 16}
MAX_ELEMENTS = 1 << 31   # no edge model has a tensor this large; a corrupt shape often does


def _tensor_problem(model, t, types) -> str | None:
    raw = t.name if isinstance(t.name, bytes) else str(t.name or "").encode()
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"a tensor name is not UTF-8 ({raw[:24]!r})"
    dtype = types.get(t.type)
    if dtype is None:
        return f"tensor '{name}' has an unknown type code {t.type}"
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    if any(d < 0 for d in shape):
        return f"tensor '{name}' has a negative dimension {shape}"
    n = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if n > MAX_ELEMENTS:
        return f"tensor '{name}' claims {n} elements"
    if t.buffer is None or not 0 <= t.buffer < len(model.buffers or []):
        return f"tensor '{name}' names buffer {t.buffer} of {len(model.buffers or [])}"
    data = model.buffers[t.buffer].data
    if data is not None and len(data) and dtype in _ITEMSIZE and len(data) != n * _ITEMSIZE[dtype]:
        return f"tensor '{name}' ({dtype} {shape}) has {len(data)} bytes of data, not {n * _ITEMSIZE[dtype]}"
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale):
        zp = q.zeroPoint if q.zeroPoint is not None else []
        if len(zp) not in (0, len(q.scale)):
            return f"tensor '{name}' has {len(q.scale)} scales but {len(zp)} zero points"
        if len(q.scale) > 1:
            dim = int(q.quantizedDimension or 0)
            if not 0 <= dim < len(shape) or shape[dim] != len(q.scale):
                return f"tensor '{name}' has {len(q.scale)} per-channel scales for shape {shape}"
        if not np.all(np.isfinite(np.asarray(q.scale, np.float64))):
            return f"tensor '{name}' has a non-finite scale"
    return None


def _op_problem(model, sg, k, op, n_codes) -> str | None:
    n = len(sg.tensors or [])
    if op.opcodeIndex is None or not 0 <= op.opcodeIndex < n_codes:
        return f"operator #{k} names op code {op.opcodeIndex} of {n_codes}"
    for what in ("inputs", "outputs", "intermediates"):
        idx = getattr(op, what)
        if idx is not None and len(idx) and (np.min(idx) < -1 or np.max(idx) >= n):
            return f"operator #{k} {what} {list(idx)} outside the {n} tensors"
    opts = op.builtinOptions
    for key, val in (vars(opts).items() if opts is not None else []):
        if "subgraph" in key.lower() and isinstance(val, int) and not 0 <= val < len(model.subgraphs):
            return f"operator #{k} {key} {val} outside the {len(model.subgraphs)} subgraphs"
    return None


def verify_tflite(path, data: bytes | None = None):
    """The unpacked model when the file is safe to hand to LiteRT / TFLite Micro; BadInput else."""
    from groundfloor import tflite_file
    model = tflite_file.read(path, data)
    if model.version != 3:
        raise BadInput(path, f"schema version {model.version}, expected 3")
    names, types = tflite_file.builtin_names(), tflite_file.type_names()
    codes = model.operatorCodes or []
    for i, oc in enumerate(codes):
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        if code not in names:
            raise BadInput(path, f"op code #{i} is builtin {code}, which this schema does not know")
    for s, sg in enumerate(model.subgraphs):
        where = f"subgraph {s}: "
        n = len(sg.tensors or [])
        for idx, what in ((sg.inputs, "inputs"), (sg.outputs, "outputs")):
            if idx is None or not len(idx):
                if s == 0:
                    raise BadInput(path, f"{where}no {what}")
            elif np.min(idx) < 0 or np.max(idx) >= n:
                raise BadInput(path, f"{where}{what} {list(idx)} outside the {n} tensors")
        for t in sg.tensors or []:
            problem = _tensor_problem(model, t, types)
            if problem:
                raise BadInput(path, where + problem)
        for k, op in enumerate(sg.operators or []):
            problem = _op_problem(model, sg, k, op, len(codes))
            if problem:
                raise BadInput(path, where + problem)
        problem = _unfed_input(model, sg)
        if problem:
            raise BadInput(path, where + problem)
    return model


def _unfed_input(model, sg) -> str | None:
    """An op input that nothing provides: not a graph input, not made by an earlier op, not a
    variable (state), and without constant data (LiteRT reads unallocated memory for it)."""
    from groundfloor import tflite_file
    available = {int(i) for i in (sg.inputs if sg.inputs is not None else [])}
    for k, op in enumerate(sg.operators or []):
        for i in (op.inputs if op.inputs is not None else []):
            i = int(i)
            if i < 0 or i in available:
                continue
            t = sg.tensors[i]
            if not (t.isVariable or tflite_file.has_data(model, t)):
                return (f"operator #{k} reads tensor '{tflite_file.tensor_name(t)}', which no input, "
                        "earlier operator or constant data provides")
        available.update(int(o) for o in (op.outputs if op.outputs is not None else []))
    return None


def verify_onnx(path):
    """onnx.checker plus initializer sizes and external-data locations; BadInput when not safe."""
    import onnx
    from onnx import numpy_helper
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
        # by path: external data (torch's dynamo exporter writes model.onnx.data) is checked
        # beside the file, and a location outside its folder refused, without being read here
        onnx.checker.check_model(str(path))
    except Exception as e:  # a protobuf that does not parse or a graph the checker refuses
        raise BadInput(path, f"not a valid ONNX model: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    folder = path.resolve().parent
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            loc = {e.key: e.value for e in init.external_data}.get("location", "")
            target = (folder / loc).resolve()
            if folder not in target.parents:
                raise BadInput(path, f"initializer '{init.name}' reads external data from outside the "
                                     f"model's folder ({loc})")
            continue
        n = int(np.prod([int(d) for d in init.dims], dtype=np.float64)) if len(init.dims) else 1
        if any(int(d) < 0 for d in init.dims) or n > MAX_ELEMENTS:
            raise BadInput(path, f"initializer '{init.name}' has dims {list(init.dims)}")
        try:
            arr = numpy_helper.to_array(init)
        except Exception as e:
            raise BadInput(path, f"initializer '{init.name}' does not decode: {e}") from None
        if arr.size != n:
            raise BadInput(path, f"initializer '{init.name}' holds {arr.size} values for dims {list(init.dims)}")
    return model


def recorded_sha256(path) -> str | None:
    """The sha256 the manifest.json next to the file records for it (None: no record)."""
    path = Path(path)
    manifest = path.parent / "manifest.json"
    try:
        arts = json.loads(manifest.read_text()).get("artifacts") or {}
    except (OSError, ValueError, AttributeError):
        return None
    for rec in arts.values() if isinstance(arts, dict) else []:
        if isinstance(rec, dict) and rec.get("file") == path.name and rec.get("sha256"):
            return str(rec["sha256"])
    return None


def verify_hash(path) -> bool:
    """True when the manifest records this file's sha256 and it matches; False when there is no
    record; BadInput when the file differs from what the export wrote."""
    want = recorded_sha256(path)
    if want is None:
        return False
    got = sha256_file(path)
    if got != want:
        raise BadInput(path, f"sha256 {got[:16]}... differs from the manifest's {want[:16]}...: the file "
                             "was changed or corrupted after export (pass verify_hash=False to load it anyway)")
    return True
