"""The one reader and writer of TFLite flatbuffers: the object API (read / pack / write), op
and tensor helpers for rewriting, a small graph description (parse) for analysis and code
generation, and the summary every manifest records (ops, weight bytes by dtype, I/O).

The schema module is ai-edge-litert's (light); TFLite Micro's or TensorFlow's is the fallback.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.fileio import write_bytes

FILE_IDENTIFIER = b"TFL3"

NP_TYPES = {"FLOAT32": np.float32, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
            "INT64": np.int64, "UINT8": np.uint8, "BOOL": np.bool_, "FLOAT16": np.float16,
            "FLOAT64": np.float64}


def schema():
    """The flatbuffer schema module (generated Python for schema.fbs)."""
    try:
        from ai_edge_litert import schema_py_generated as s
        return s
    except ImportError:
        pass
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
        return s
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as s
        return s


def _enum_names(enum_cls) -> dict:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def builtin_names() -> dict:
    """Builtin operator code -> name (e.g. 44 -> 'UNIDIRECTIONAL_SEQUENCE_LSTM')."""
    return _enum_names(schema().BuiltinOperator)


def type_names() -> dict:
    """TensorType code -> upper-case name ('INT8', 'FLOAT32', ...)."""
    return _enum_names(schema().TensorType)


def dtype_name(t) -> str:
    """A tensor's dtype in numpy spelling ('int8', 'float32', ...)."""
    return type_names().get(t.type, f"TYPE{t.type}").lower()


def read(path, data: bytes | None = None):
    """The unpacked model (schema.ModelT); BadInput naming the file when it is not a model."""
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise BadInput(path, f"cannot read the model: {e.strerror}") from e
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise BadInput(path, "not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # a truncated or corrupt flatbuffer
        raise BadInput(path, f"cannot parse the flatbuffer: {type(e).__name__}: {e}") from e
    if not model.subgraphs:
        raise BadInput(path, "the model has no subgraph")
    return model


def read_one_graph(path):
    """(model, its only subgraph), for the rewrites that edit one straight graph; ValueError when
    there are more (a WHILE loop's body and condition are subgraphs of their own)."""
    model = read(path)
    if len(model.subgraphs) != 1:
        raise ValueError(f"{len(model.subgraphs)} subgraphs (a WHILE loop?), not a fused LSTM graph")
    return model, model.subgraphs[0]


def pack(model) -> bytes:
    import flatbuffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def write(model, path):
    """Pack and write atomically."""
    return write_bytes(path, pack(model))


def op_code(model, op) -> int:
    oc = model.operatorCodes[op.opcodeIndex]
    return max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))


def op_name(model, op, names: dict | None = None) -> str:
    """'FULLY_CONNECTED', ..., or 'CUSTOM:<code>' for custom ops."""
    code = op_code(model, op)
    name = (names or builtin_names()).get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        cc = model.operatorCodes[op.opcodeIndex].customCode
        name = f"CUSTOM:{cc.decode() if isinstance(cc, bytes) else cc}"
    return name


def op_names(model, subgraph: int | None = 0) -> list:
    """Op names in execution order of one subgraph, or of every subgraph (subgraph=None)."""
    names = builtin_names()
    graphs = model.subgraphs if subgraph is None else [model.subgraphs[subgraph]]
    return [op_name(model, op, names) for g in graphs for op in (g.operators or [])]


def tensor_name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def has_data(model, t) -> bool:
    b = model.buffers[t.buffer] if t.buffer is not None and t.buffer < len(model.buffers) else None
    return b is not None and b.data is not None and len(b.data) > 0


def tensor_data(model, t, dtype=None) -> np.ndarray | None:
    """A constant tensor's values (a copy), shaped; None for a tensor without data."""
    if not has_data(model, t):
        return None
    dtype = dtype or NP_TYPES[type_names()[t.type]]
    arr = np.frombuffer(bytes(bytearray(model.buffers[t.buffer].data)), dtype=dtype).copy()
    shape = [int(d) for d in t.shape] if t.shape is not None else []
    return arr.reshape(shape) if shape and int(np.prod(shape)) == arr.size else arr


def set_tensor_data(model, t, arr):
    """Give t a buffer of its own holding arr (the converter shares identical constant buffers,
    e.g. all-zero gate biases, so rewriting one in place would rewrite the others)."""
    b = schema().BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)
    model.buffers.append(b)
    t.buffer = len(model.buffers) - 1


def bias_values(model, t) -> np.ndarray:
    """A constant int32 bias's float64 values: its integers times its (per-channel) scale."""
    scale, _ = qparams(t)
    return tensor_data(model, t, "<i4").astype(np.float64) * scale


def qparams(t):
    """(scale float64 [n], zero_point int64 [n]) or (None, None) for an unquantized tensor."""
    q = t.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None, None
    zp = q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale)
    return np.asarray(q.scale, np.float64), np.asarray(zp, np.int64)


# ------------------------------------------------------------------ graph description

@dataclass
class Tensor:
    index: int
    name: str
    dtype: str                   # "INT8", "INT16", "INT32", "FLOAT32", ...
    shape: tuple
    scale: np.ndarray | None     # float32, one per channel (or one)
    zero_point: np.ndarray | None
    quantized_dimension: int = 0
    data: np.ndarray | None = None
    is_variable: bool = False

    @property
    def np_dtype(self):
        return NP_TYPES.get(self.dtype)

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self):
        return self.size * np.dtype(self.np_dtype).itemsize

    @property
    def zp(self) -> int:
        return int(self.zero_point[0]) if self.zero_point is not None and len(self.zero_point) else 0

    @property
    def sc(self) -> float:
        return float(self.scale[0]) if self.scale is not None and len(self.scale) else 0.0


@dataclass
class Op:
    index: int
    kind: str
    version: int
    inputs: list
    outputs: list
    intermediates: list = field(default_factory=list)
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    path: str
    tensors: list
    ops: list
    inputs: list
    outputs: list

    def t(self, i):
        return None if i is None or i < 0 else self.tensors[i]


def _tensor(model, buf, i, t, types) -> Tensor:
    scale = zp = None
    qdim = 0
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale):
        scale = np.asarray(q.scale, dtype=np.float32)
        zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scale), dtype=np.int64)
        qdim = int(q.quantizedDimension or 0)
    dtype = types.get(t.type, f"TYPE{t.type}")
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    b = model.buffers[t.buffer] if t.buffer is not None and t.buffer < len(model.buffers) else None
    raw = None
    if b is not None:
        if b.data is not None and len(b.data):
            raw = np.asarray(b.data, dtype=np.uint8).tobytes()
        elif getattr(b, "offset", 0) and getattr(b, "size", 0):  # buffers stored past 2 GB
            raw = buf[b.offset:b.offset + b.size]
    data = None
    if raw is not None and dtype in NP_TYPES:
        data = np.frombuffer(raw, dtype=NP_TYPES[dtype]).reshape(shape if shape else ()).copy()
    return Tensor(i, tensor_name(t), dtype, shape, scale, zp, qdim, data, bool(t.isVariable))


def parse(path) -> Graph:
    """Subgraph 0 as tensors (type, shape, quantization, constant data) and ops in order."""
    path = Path(path)
    buf = path.read_bytes() if path.exists() else None
    model = read(path, buf)
    s = schema()
    names, types, acts = builtin_names(), type_names(), _enum_names(s.ActivationFunctionType)
    sg = model.subgraphs[0]
    tensors = [_tensor(model, buf, i, t, types) for i, t in enumerate(sg.tensors or [])]
    ops = []
    for k, op in enumerate(sg.operators or []):
        options = {}
        if op.builtinOptions is not None:
            for key, val in vars(op.builtinOptions).items():
                options[key] = acts.get(val, val) if key == "fusedActivationFunction" else val
        oc = model.operatorCodes[op.opcodeIndex]
        ops.append(Op(k, op_name(model, op, names), int(oc.version or 1), [int(x) for x in op.inputs],
                      [int(x) for x in op.outputs],
                      [int(x) for x in op.intermediates] if op.intermediates is not None else [], options))
    return Graph(str(path), tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs])


# ------------------------------------------------------------------ manifest summary

def io_record(t) -> dict:
    """A graph input/output as every stage describes it: name, dtype, shape, scale, zero point."""
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
    zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else None
    return {"name": tensor_name(t), "dtype": dtype_name(t), "shape": [int(d) for d in t.shape],
            "scale": scale, "zero_point": zp}


def summary(path) -> dict:
    """Ops of subgraph 0, weight bytes by dtype over every subgraph, and the I/O records."""
    model = read(path)
    g = model.subgraphs[0]
    ops = op_names(model)
    weight_bytes = Counter()
    for sub in model.subgraphs:
        for t in sub.tensors or []:
            if has_data(model, t):
                weight_bytes[dtype_name(t)] += len(model.buffers[t.buffer].data)
    return {
        "ops": ops,
        "op_counts": dict(Counter(ops)),
        "subgraphs": len(model.subgraphs),
        "weight_bytes_by_dtype": dict(weight_bytes),
        "io": {"inputs": [io_record(g.tensors[i]) for i in g.inputs],
               "outputs": [io_record(g.tensors[i]) for i in g.outputs]},
    }
