"""What is inside an artifact: ops, weight bytes by dtype, input/output quantization.

Reads the files directly (the TFLite flatbuffer schema ships with ai-edge-litert, ONNX with
onnx), so reports and checks can tell a float file from a quantized one without trusting
the options that made it.
"""
from collections import Counter
from pathlib import Path

import numpy as np

_TFLITE_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
                  7: "int16", 9: "int8", 10: "float64"}


def _tflite_model(path):
    from ai_edge_litert import schema_py_generated as schema
    buf = Path(path).read_bytes()
    return schema, schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)


def _builtin_names(schema):
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _tensor_io(t, dtype):
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
    zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else None
    name = t.name.decode() if isinstance(t.name, bytes) else t.name
    return {"name": name, "dtype": dtype, "shape": [int(d) for d in t.shape],
            "scale": scale, "zero_point": zp}


def tflite_summary(path) -> dict:
    schema, model = _tflite_model(path)
    names = _builtin_names(schema)
    g = model.subgraphs[0]
    ops = []
    for op in g.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        ops.append(names.get(builtin, f"CUSTOM({code.customCode})"))
    weight_bytes = Counter()
    for sub in model.subgraphs:
        for t in sub.tensors:
            data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            if data is not None and len(data):
                weight_bytes[_TFLITE_DTYPES.get(t.type, str(t.type))] += len(data)
    dtype = lambda t: _TFLITE_DTYPES.get(t.type, str(t.type))
    return {
        "ops": ops,
        "op_counts": dict(Counter(ops)),
        "subgraphs": len(model.subgraphs),
        "weight_bytes_by_dtype": dict(weight_bytes),
        "io": {"inputs": [_tensor_io(g.tensors[i], dtype(g.tensors[i])) for i in g.inputs],
               "outputs": [_tensor_io(g.tensors[i], dtype(g.tensors[i])) for i in g.outputs]},
    }


def onnx_summary(path) -> dict:
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(path))
    ops = [n.op_type for n in m.graph.node]
    weight_bytes = Counter()
    for init in m.graph.initializer:
        arr = numpy_helper.to_array(init)
        weight_bytes[str(arr.dtype)] += arr.nbytes

    def io(v):
        t = v.type.tensor_type
        dims = [d.dim_value if d.dim_value else (d.dim_param or -1) for d in t.shape.dim]
        return {"name": v.name, "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)),
                "shape": dims, "scale": None, "zero_point": None}

    init_names = {i.name for i in m.graph.initializer}
    return {
        "ops": ops,
        "op_counts": dict(Counter(ops)),
        "opset": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "weight_bytes_by_dtype": dict(weight_bytes),
        "io": {"inputs": [io(v) for v in m.graph.input if v.name not in init_names],
               "outputs": [io(v) for v in m.graph.output]},
    }


def summary(path) -> dict:
    return tflite_summary(path) if str(path).endswith(".tflite") else onnx_summary(path)


def is_quantized(info: dict) -> bool:
    """True when most weight bytes are 8-bit integers: a float file never passes."""
    wb = info["weight_bytes_by_dtype"]
    total = sum(wb.values()) or 1
    return (wb.get("int8", 0) + wb.get("uint8", 0)) / total > 0.5


def quantize_input(x: np.ndarray, io: dict) -> np.ndarray:
    """Float values to the artifact's input dtype (int8 uses its scale and zero point)."""
    if io["dtype"] in ("int8", "uint8", "int16") and io.get("scale"):
        info = np.iinfo(io["dtype"])
        q = np.round(x / io["scale"]) + io["zero_point"]
        return np.clip(q, info.min, info.max).astype(io["dtype"])
    return x.astype(io["dtype"])


def dequantize_output(y: np.ndarray, io: dict) -> np.ndarray:
    if io["dtype"] in ("int8", "uint8", "int16") and io.get("scale"):
        return (y.astype(np.float32) - io["zero_point"]) * io["scale"]
    return y.astype(np.float32)
