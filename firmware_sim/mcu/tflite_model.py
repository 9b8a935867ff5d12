"""Read an int8 .tflite flatbuffer into a small graph description (tensors, ops, quantization).

Only what the code generator needs: the operators of subgraph 0 in execution order, every
tensor's type, shape, quantization parameters and constant data, and each op's options.
An operator the generator does not implement is rejected here with BadInput naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import BadInput

SUPPORTED_OPS = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", "SOFTMAX", "STRIDED_SLICE",
                 "RESHAPE")

_NP_TYPES = {"FLOAT32": np.float32, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
             "INT64": np.int64, "UINT8": np.uint8, "BOOL": np.bool_, "FLOAT16": np.float16}


def _schema():
    """The flatbuffer schema module: ai-edge-litert's is light; TensorFlow's is the fallback."""
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


def _enum_names(enum_cls):
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


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
        return _NP_TYPES.get(self.dtype)

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


def load(path, check_supported: bool = True) -> Graph:
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise BadInput(path, f"cannot read the model: {e.strerror}") from e
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise BadInput(path, "not a TFLite flatbuffer (no TFL3 identifier)")
    s = _schema()
    try:
        model = s.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # a truncated or corrupt flatbuffer
        raise BadInput(path, f"cannot parse the flatbuffer: {e}") from e
    if not model.subgraphs:
        raise BadInput(path, "the model has no subgraph")
    op_names = _enum_names(s.BuiltinOperator)
    type_names = _enum_names(s.TensorType)
    act_names = _enum_names(s.ActivationFunctionType)
    sg = model.subgraphs[0]

    tensors = []
    for i, t in enumerate(sg.tensors or []):
        q = t.quantization
        scale = zp = None
        qdim = 0
        if q is not None and q.scale is not None and len(q.scale):
            scale = np.asarray(q.scale, dtype=np.float32)
            zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scale), dtype=np.int64)
            qdim = int(q.quantizedDimension or 0)
        dtype = type_names.get(t.type, f"TYPE{t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        data = None
        b = model.buffers[t.buffer] if t.buffer is not None and t.buffer < len(model.buffers) else None
        raw = None
        if b is not None:
            if b.data is not None and len(b.data):
                raw = np.asarray(b.data, dtype=np.uint8).tobytes()
            elif getattr(b, "offset", 0) and getattr(b, "size", 0):
                raw = buf[b.offset:b.offset + b.size]
        if raw is not None and dtype in _NP_TYPES:
            data = np.frombuffer(raw, dtype=_NP_TYPES[dtype]).reshape(shape if shape else ()).copy()
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, dtype, shape, scale, zp, qdim, data, bool(t.isVariable)))

    ops = []
    for k, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        kind = op_names.get(code, f"BUILTIN_{code}")
        if kind == "CUSTOM":
            cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode
            kind = f"CUSTOM:{cc}"
        options = {}
        if op.builtinOptions is not None:
            for key, val in vars(op.builtinOptions).items():
                if key == "fusedActivationFunction":
                    val = act_names.get(val, val)
                options[key] = val
        ops.append(Op(k, kind, int(oc.version or 1), [int(x) for x in op.inputs],
                      [int(x) for x in op.outputs],
                      [int(x) for x in op.intermediates] if op.intermediates is not None else [],
                      options))

    graph = Graph(str(path), tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs])
    if check_supported:
        check(graph)
    return graph


def check(graph: Graph):
    """Reject what the generated C cannot run, naming the op or tensor."""
    bad = [op for op in graph.ops if op.kind not in SUPPORTED_OPS]
    if bad:
        names = sorted({op.kind for op in bad})
        raise BadInput(graph.path, f"unsupported op{'s' if len(names) > 1 else ''} for the MCU code "
                       f"generator: {', '.join(names)} (op #{bad[0].index}); supported: "
                       f"{', '.join(SUPPORTED_OPS)}")
    for i in graph.inputs + graph.outputs:
        t = graph.tensors[i]
        if t.dtype != "INT8":
            raise BadInput(graph.path, f"model {'input' if i in graph.inputs else 'output'} "
                           f"'{t.name}' is {t.dtype}; the MCU build needs a full-int8 model "
                           "(int8 input and output)")
    for op in graph.ops:
        if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            _check_lstm(graph, op)
        elif op.kind == "FULLY_CONNECTED":
            x, w = graph.t(op.inputs[0]), graph.t(op.inputs[1])
            if x.dtype != "INT8" or w.dtype != "INT8" or w.data is None:
                raise BadInput(graph.path, f"FULLY_CONNECTED op #{op.index}: needs int8 input and "
                               f"constant int8 weights (got {x.dtype}/{w.dtype})")
            if op.options.get("fusedActivationFunction", "NONE") not in ("NONE", "RELU", "RELU6",
                                                                         "RELU_N1_TO_1"):
                raise BadInput(graph.path, f"FULLY_CONNECTED op #{op.index}: fused activation "
                               f"{op.options.get('fusedActivationFunction')} is not supported")
        elif op.kind == "SOFTMAX":
            x, y = graph.t(op.inputs[0]), graph.t(op.outputs[0])
            if x.dtype != "INT8" or y.dtype != "INT8":
                raise BadInput(graph.path, f"SOFTMAX op #{op.index}: only int8 -> int8 is supported")
        elif op.kind == "STRIDED_SLICE":
            for i in op.inputs[1:]:
                if graph.t(i) is None or graph.t(i).data is None:
                    raise BadInput(graph.path, f"STRIDED_SLICE op #{op.index}: begin/end/strides "
                                   "must be constants")


def _check_lstm(graph: Graph, op: Op):
    g = graph
    where = f"UNIDIRECTIONAL_SEQUENCE_LSTM op #{op.index}"
    ins = op.inputs + [-1] * (24 - len(op.inputs))
    x = g.t(ins[0])
    if x is None or x.dtype != "INT8":
        raise BadInput(g.path, f"{where}: input must be int8 (this is not a full-int8 model)")
    for k in range(1, 9):
        w = g.t(ins[k])
        if w is None:
            raise BadInput(g.path, f"{where}: CIFG (no input gate) is not supported")
        if w.dtype != "INT8" or w.data is None:
            raise BadInput(g.path, f"{where}: weights must be constant int8 (hybrid or float LSTM?)")
        if w.scale is None or len(w.scale) != 1:
            raise BadInput(g.path, f"{where}: per-channel LSTM weights are not supported")
    if any(g.t(ins[k]) is not None for k in (9, 10, 11)):
        raise BadInput(g.path, f"{where}: peephole connections are not supported")
    if any(g.t(ins[k]) is not None for k in (16, 17)):
        raise BadInput(g.path, f"{where}: projection is not supported")
    if any(g.t(ins[k]) is not None for k in (20, 21, 22, 23)):
        raise BadInput(g.path, f"{where}: layer normalization is not supported")
    h, c = g.t(ins[18]), g.t(ins[19])
    if h is None or c is None or h.dtype != "INT8" or c.dtype != "INT16":
        raise BadInput(g.path, f"{where}: needs an int8 hidden state and an int16 cell state")
    if op.options.get("timeMajor"):
        raise BadInput(g.path, f"{where}: time-major input is not supported")
    if x.shape[0] != 1:
        raise BadInput(g.path, f"{where}: batch size {x.shape[0]}; only batch 1 is supported")
    cs = float(c.scale[0])
    p = np.log2(cs)
    if abs(p - round(p)) > 1e-6:
        raise BadInput(g.path, f"{where}: cell state scale {cs} is not a power of two")
    act = op.options.get("fusedActivationFunction", "TANH")
    if act not in ("TANH", "SIGMOID"):
        raise BadInput(g.path, f"{where}: cell activation {act} is not supported")
    for k in (12, 13, 14, 15):
        b = g.t(ins[k])
        if b is None or b.dtype != "INT32" or b.data is None:
            raise BadInput(g.path, f"{where}: gate biases must be constant int32")
