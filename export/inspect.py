"""What is inside an artifact: ops, weight bytes by dtype, input/output quantization.

Reads the files directly (the TFLite flatbuffer schema ships with ai-edge-litert, ONNX with
onnx), so reports and checks can tell a float file from a quantized one without trusting
the options that made it.
"""
from collections import Counter

from groundfloor import tflite_file

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
    return tflite_file.summary(path) if str(path).endswith(".tflite") else onnx_summary(path)


def is_quantized(info: dict) -> bool:
    """True when most weight bytes are 8-bit integers: a float file never passes."""
    wb = info["weight_bytes_by_dtype"]
    total = sum(wb.values()) or 1
    return (wb.get("int8", 0) + wb.get("uint8", 0)) / total > 0.5
