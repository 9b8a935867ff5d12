"""Offline device-latency estimate from the model graph and a device profile's cost model.

Method (stated in every estimate as "method"):
1. Parse the model file. TFLite: the flatbuffer (groundfloor.tflite_file), every
   operator with its tensors' shapes and dtypes. ONNX: the graph after onnx shape inference.
2. Count per operator: MACs (multiply-accumulates), nonlinearity elements (sigmoid/tanh/exp/
   softmax), elementwise elements (add/mul/requantize/copy) and one invocation.
   - Recurrent ops (TFLite *_SEQUENCE_LSTM/RNN, ONNX LSTM/GRU/RNN/DynamicQuantizeLSTM):
     MACs = steps x batch x (elements of every constant 2-D weight matrix: input and recurrent
     kernels of every gate and direction, projection); per step and unit an LSTM adds 5
     nonlinearities (4 gates + tanh(c)) and 4 elementwise ops (f*c, i*g, +, o*tanh(c)).
   - FULLY_CONNECTED / Gemm / MatMul with constant weights: rows x weight elements.
   - CONV_2D / Conv: output elements x (weight elements / output channels); depthwise:
     output elements x kernel area. BATCH_MATMUL: output elements x inner dimension.
   - Ops in loop bodies (TFLite WHILE subgraphs, ONNX Loop bodies) count once per time step
     (the input's T): an assumption, the trip count is not in the file.
3. cycles = sum over ops of MACs x cycles_per_mac[weight dtype] + nonlinearities x
   cycles_per_activation + elementwise x cycles_per_elementwise + op_overhead_cycles;
   seconds = cycles / clock_hz. The profile's cycle costs are assumptions (see the .toml);
   the result is an "estimated" figure, not a measurement.
"""
from __future__ import annotations

import math

from groundfloor import tflite_file

METHOD = ("per-operator MAC/nonlinearity/elementwise counts from the model file's tensor shapes "
          "(recurrent ops: steps x batch x weight-matrix elements), times the device profile's "
          "cycles per MAC for the weight dtype, cycles per nonlinearity and elementwise element, "
          "plus a fixed overhead per operator invocation; divided by the clock. Loop bodies count "
          "once per time step.")

_TFL_DTYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "STRING": 0,
                    "BOOL": 1, "INT16": 2, "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16,
                    "UINT64": 8, "RESOURCE": 0, "VARIANT": 0, "UINT32": 4, "UINT16": 2, "INT4": 0.5,
                    "BFLOAT16": 2}
_TFL_RECURRENT = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM",
                  "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "RNN"}
_TFL_NONLINEAR = {"LOGISTIC", "TANH", "SOFTMAX", "EXP", "LOG_SOFTMAX", "GELU", "HARD_SWISH", "ELU"}
# no arithmetic of their own (control flow: the ops of its subgraphs count)
_TFL_FREE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "DELEGATE", "WHILE", "IF", "CALL_ONCE"}


def _prod(shape):
    return int(math.prod(int(max(s, 1)) for s in shape)) if shape is not None else 0


def _op_record(op, macs, mac_dtype, nonlinear, elementwise, invoked=True) -> dict:
    """One operator's counts, as summarize() and estimate_latency() read them."""
    return {"op": op, "macs": int(macs), "mac_dtype": mac_dtype, "nonlinear": int(nonlinear),
            "elementwise": int(elementwise), "invocations": int(invoked)}


def _without_macs(op, out_elems, nonlinear_ops, free_ops) -> tuple[int, int]:
    """(nonlinear, elementwise) elements of an op without MACs: an activation, a free op, or
    elementwise work on every output element."""
    if op in nonlinear_ops:
        return out_elems, 0
    return 0, (0 if op in free_ops else out_elems)


def _dtype_name(dtype: str) -> str:
    d = dtype.lower()
    if d in ("int8", "uint8", "int4"):
        return "int8"
    if d in ("int16", "uint16"):
        return "int16"
    return "float32"


# ---------------------------------------------------------------------------- TFLite

def _tflite_tensors(model, sg) -> list[dict]:
    out = []
    for t in sg.tensors or []:
        shape = [int(s) for s in t.shape] if t.shape is not None and len(t.shape) else []
        tname = tflite_file.dtype_name(t).upper()
        size = _TFL_DTYPE_BYTES.get(tname, 4)
        out.append({"name": tflite_file.tensor_name(t), "shape": shape, "dtype": tname.lower(),
                    "bytes": int(math.ceil(_prod(shape) * size)) if shape else int(size),
                    "const": bool(t.buffer and tflite_file.has_data(model, t)), "variable": bool(t.isVariable)})
    return out


def analyze_tflite(path) -> dict:
    model = tflite_file.read(path)
    names = tflite_file.builtin_names()
    main = model.subgraphs[0]
    in_t = _tflite_tensors(model, main)
    in_shape = in_t[main.inputs[0]]["shape"] if main.inputs is not None and len(main.inputs) else []
    steps_guess = in_shape[1] if len(in_shape) == 3 else 1
    ops, state, acts = [], [], 0
    for si, sg in enumerate(model.subgraphs):
        tens = in_t if si == 0 else _tflite_tensors(model, sg)
        repeat = 1 if si == 0 else steps_guess
        acts += sum(t["bytes"] for t in tens if not t["const"] and not t["variable"])
        for oi, op in enumerate(sg.operators or []):
            name = tflite_file.op_name(model, op, names)
            ins = [tens[i] if i >= 0 else None for i in op.inputs] if op.inputs is not None else []
            outs = [tens[i] for i in op.outputs] if op.outputs is not None else []
            rec = _count_tflite_op(name, ins, outs, op)
            rec.update({"subgraph": si, "index": oi, "repeat": repeat})
            ops.append(rec)
            if name in _TFL_RECURRENT:
                for t in ins:
                    if t is not None and t["variable"]:
                        state.append({"op": name, "subgraph": si, "tensor": t["name"], "shape": t["shape"],
                                      "dtype": t["dtype"], "bytes": t["bytes"]})
    io = {"inputs": [in_t[i] for i in (main.inputs if main.inputs is not None else [])],
          "outputs": [in_t[i] for i in (main.outputs if main.outputs is not None else [])]}
    # variable tensors not attached to a recurrent op (e.g. VAR_HANDLE style state)
    seen = {(s["subgraph"], s["tensor"]) for s in state}
    for t in in_t:
        if t["variable"] and (0, t["name"]) not in seen:
            state.append({"op": "variable", "subgraph": 0, "tensor": t["name"], "shape": t["shape"],
                          "dtype": t["dtype"], "bytes": t["bytes"]})
    weights = {}
    for t in in_t:
        if t["const"]:
            weights[t["dtype"]] = weights.get(t["dtype"], 0) + t["bytes"]
    return {"format": "tflite", "subgraphs": len(model.subgraphs), "ops": ops, "state": state, "io": io,
            "activation_bytes_upper": acts, "weight_bytes_by_dtype": weights,
            "steps": steps_guess}


def _time_major(op) -> bool:
    return bool(getattr(op.builtinOptions, "timeMajor", False))


def _count_tflite_op(name, ins, outs, op) -> dict:
    macs = nonlin = elem = 0
    mac_dtype = None
    out_elems = sum(_prod(t["shape"]) for t in outs)
    if name in _TFL_RECURRENT:
        x = ins[0]
        shape = x["shape"] if x else []
        if name in ("LSTM", "RNN") or len(shape) < 3:
            steps, batch = 1, shape[0] if shape else 1
        elif _time_major(op):
            steps, batch = shape[0], shape[1]
        else:
            batch, steps = shape[0], shape[1]
        mats = [t for t in ins[1:] if t is not None and t["const"] and len(t["shape"]) == 2]
        macs = steps * batch * sum(_prod(t["shape"]) for t in mats)
        mac_dtype = _dtype_name(mats[0]["dtype"]) if mats else "float32"
        units = sum(t["shape"][-1] for t in outs if t["shape"]) if outs else 0
        if "LSTM" in name:
            nonlin = steps * batch * 5 * units
            elem = steps * batch * 4 * units
        else:
            nonlin = steps * batch * units
            elem = steps * batch * units
    elif name == "FULLY_CONNECTED" and len(ins) > 1 and ins[1] is not None:
        w = ins[1]
        k = w["shape"][-1] if w["shape"] else 1
        rows = _prod(ins[0]["shape"]) // max(k, 1) if ins[0] else 1
        macs = rows * _prod(w["shape"])
        mac_dtype = _dtype_name(w["dtype"])
        elem = out_elems
    elif name in ("CONV_2D", "CONV_3D", "TRANSPOSE_CONV") and len(ins) > 1 and ins[1] is not None:
        w = ins[1]
        per_out = _prod(w["shape"]) // max(w["shape"][0] if w["shape"] else 1, 1)
        macs = out_elems * per_out
        mac_dtype = _dtype_name(w["dtype"])
    elif name == "DEPTHWISE_CONV_2D" and len(ins) > 1 and ins[1] is not None:
        w = ins[1]
        macs = out_elems * (_prod(w["shape"][1:3]) if len(w["shape"]) >= 3 else 1)
        mac_dtype = _dtype_name(w["dtype"])
    elif name == "BATCH_MATMUL" and len(ins) > 1 and ins[0] is not None:
        k = ins[0]["shape"][-1] if ins[0]["shape"] else 1
        macs = out_elems * k
        mac_dtype = _dtype_name(ins[1]["dtype"] if ins[1] else ins[0]["dtype"])
    else:
        nonlin, elem = _without_macs(name, out_elems, _TFL_NONLINEAR, _TFL_FREE)
    return _op_record(name, macs, mac_dtype, nonlin, elem, invoked=name != "DELEGATE")


# ---------------------------------------------------------------------------- ONNX

_ONNX_NONLINEAR = {"Sigmoid", "Tanh", "Softmax", "Exp", "LogSoftmax", "HardSigmoid", "Gelu", "Elu"}
_ONNX_FREE = {"Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Shape", "Constant", "Loop", "Scan", "If"}
_ONNX_RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1, "DynamicQuantizeLSTM": 4}
_ONNX_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_ONNX_DTYPE = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def analyze_onnx(path, steps_hint: int | None = None) -> dict:
    import onnx
    model = onnx.load(str(path))
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass
    g = model.graph
    shapes, dtypes = {}, {}

    def note(vi):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        dtypes[vi.name] = tt.elem_type

    for vi in list(g.input) + list(g.output) + list(g.value_info):
        note(vi)
    inits = {}
    for t in g.initializer:
        inits[t.name] = t
        shapes[t.name] = list(t.dims)
        dtypes[t.name] = t.data_type
    in_names = [i.name for i in g.input if i.name not in inits]
    in_shape = shapes.get(in_names[0], []) if in_names else []
    steps = steps_hint or (in_shape[1] if len(in_shape) == 3 and in_shape[1] > 0 else 1)

    def tbytes(name):
        s = shapes.get(name)
        if s is None or any(d < 0 for d in s):
            return 0
        return _prod(s) * _ONNX_ELEM_BYTES.get(dtypes.get(name, 1), 4)

    ops, state = [], []

    def walk(graph, repeat, depth):
        for node in graph.node:
            rec = _count_onnx_node(node, shapes, dtypes, inits)
            rec.update({"repeat": repeat, "depth": depth})
            ops.append(rec)
            if node.op_type in _ONNX_RECURRENT:
                hidden, dirs = _onnx_rnn_size(node)
                x = shapes.get(node.input[0], [])
                batch = x[1] if len(x) == 3 and x[1] > 0 else 1
                n_state = 2 if "LSTM" in node.op_type else 1
                for kind in (["h", "c"] if n_state == 2 else ["h"]):
                    state.append({"op": node.op_type, "tensor": f"{node.name}:{kind}",
                                  "shape": [dirs, batch, hidden], "dtype": "float32",
                                  "bytes": dirs * batch * hidden * 4})
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g, repeat * (steps if node.op_type in ("Loop", "Scan") else 1), depth + 1)

    walk(g, 1, 0)
    acts = sum(tbytes(vi.name) for vi in g.value_info)
    io = {"inputs": [{"name": n, "shape": shapes.get(n), "dtype": _ONNX_DTYPE.get(dtypes.get(n), "?"),
                      "bytes": tbytes(n)} for n in in_names],
          "outputs": [{"name": o.name, "shape": shapes.get(o.name), "dtype": _ONNX_DTYPE.get(dtypes.get(o.name), "?"),
                       "bytes": tbytes(o.name)} for o in g.output]}
    weights = {}
    for name, t in inits.items():
        dt = _ONNX_DTYPE.get(t.data_type, str(t.data_type))
        weights[dt] = weights.get(dt, 0) + tbytes(name)
    return {"format": "onnx", "opset": [{"domain": o.domain or "ai.onnx", "version": o.version} for o in model.opset_import],
            "ops": ops, "state": state, "io": io, "activation_bytes_upper": acts,
            "weight_bytes_by_dtype": weights, "steps": steps}


def _onnx_rnn_size(node) -> tuple[int, int]:
    """(hidden_size, directions) of an ONNX LSTM/GRU/RNN node."""
    hidden = next((a.i for a in node.attribute if a.name == "hidden_size"), 0)
    direction = next((a.s.decode() for a in node.attribute if a.name == "direction"), "forward")
    return hidden, 2 if direction == "bidirectional" else 1


def _onnx_mac_dtype(weight_elem_type) -> str:
    """The MAC dtype of an ONNX weight's element type (2 uint8, 3 int8: integer MACs)."""
    return "int8" if weight_elem_type in (2, 3) else "float32"


def _count_onnx_node(node, shapes, dtypes, inits) -> dict:
    t = node.op_type
    macs = nonlin = elem = 0
    mac_dtype = None
    out_shape = shapes.get(node.output[0]) if node.output else None
    out_elems = _prod(out_shape) if out_shape and all(d >= 0 for d in out_shape) else 0
    if t in _ONNX_RECURRENT:
        x = shapes.get(node.input[0], [])
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        if len(x) == 3:
            steps, batch = (x[0], x[1]) if layout == 0 else (x[1], x[0])
        else:
            steps, batch = 1, 1
        steps, batch = max(steps, 1), max(batch, 1)
        mats = [n for n in node.input[1:3] if n in inits]
        macs = steps * batch * sum(_prod(shapes[n]) for n in mats)
        mac_dtype = _onnx_mac_dtype(dtypes.get(node.input[1], 1))
        hidden, dirs = _onnx_rnn_size(node)
        units = hidden * dirs
        gates = _ONNX_RECURRENT[t]
        nonlin = steps * batch * units * (gates + 1 if gates == 4 else gates)
        elem = steps * batch * units * (4 if gates == 4 else 3)
    elif t in ("Gemm", "MatMul", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul",
               "MatMulIntegerToFloat"):
        # the constant operand is the weight matrix
        w_name = next((n for n in node.input[1:] if n in inits and len(shapes.get(n, [])) == 2), None)
        if t == "QLinearMatMul":
            w_name = node.input[3] if len(node.input) > 3 and node.input[3] in inits else None
        if w_name is not None:
            macs = (out_elems // max(_prod(shapes[w_name][-1:]), 1) if out_elems else 1) * _prod(shapes[w_name])
            if t == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
                macs = (out_elems // max(shapes[w_name][0], 1) if out_elems else 1) * _prod(shapes[w_name])
            mac_dtype = _onnx_mac_dtype(dtypes.get(w_name))
        else:
            a = shapes.get(node.input[0], [])
            k = a[-1] if a and a[-1] > 0 else 1
            macs = out_elems * k
            mac_dtype = "float32"
        elem = out_elems if t == "Gemm" else 0
    elif t in ("Conv", "ConvInteger", "QLinearConv") and len(node.input) > 1:
        w_name = node.input[3] if t == "QLinearConv" else node.input[1]
        w = shapes.get(w_name, [])
        if w:
            macs = out_elems * (_prod(w) // max(w[0], 1))
            mac_dtype = _onnx_mac_dtype(dtypes.get(w_name))
    else:
        nonlin, elem = _without_macs(t, out_elems, _ONNX_NONLINEAR, _ONNX_FREE)
    return _op_record(t if not node.domain or node.domain == "ai.onnx" else f"{node.domain}.{t}",
                      macs, mac_dtype, nonlin, elem, invoked=t != "Constant")


def analyze_model(path, fmt: str, steps_hint: int | None = None) -> dict:
    if fmt == "tflite":
        return analyze_tflite(path)
    if fmt == "onnx":
        return analyze_onnx(path, steps_hint)
    raise ValueError(f"unknown format {fmt!r}")


def child_analyze(path, fmt, steps_hint=None):
    """Isolated-child entry point (a malformed file must not take the bench down)."""
    return analyze_model(path, fmt, steps_hint)


# ---------------------------------------------------------------------------- estimate

def summarize(analysis: dict) -> dict:
    ops = analysis["ops"]
    macs_by_dtype: dict = {}
    for o in ops:
        if o["macs"]:
            d = o["mac_dtype"] or "float32"
            macs_by_dtype[d] = macs_by_dtype.get(d, 0) + o["macs"] * o["repeat"]
    return {"ops": sum(o["invocations"] * o["repeat"] for o in ops),
            "op_types": sorted({o["op"] for o in ops}),
            "macs": sum(macs_by_dtype.values()), "macs_by_dtype": macs_by_dtype,
            "nonlinear": sum(o["nonlinear"] * o["repeat"] for o in ops),
            "elementwise": sum(o["elementwise"] * o["repeat"] for o in ops)}


def estimate_latency(analysis: dict, profile, invokes_per_window: int = 1) -> dict:
    """Estimated device latency of one inference (one window; a streaming model is invoked
    `invokes_per_window` times, once per step)."""
    per_op = []
    total = 0.0
    for o in analysis["ops"]:
        c = (o["macs"] * profile.cycles_per_mac(o["mac_dtype"] or "float32")
             + o["nonlinear"] * profile.cycles_per_activation
             + o["elementwise"] * profile.cycles_per_elementwise
             + o["invocations"] * profile.op_overhead_cycles) * o["repeat"]
        total += c
        per_op.append({"op": o["op"], "macs": o["macs"] * o["repeat"], "mac_dtype": o["mac_dtype"],
                       "cycles": round(c)})
    cycles = total * invokes_per_window
    us = cycles / profile.clock_hz * 1e6
    return {"kind": "estimated", "unit": "us", "value": round(us, 3), "cycles": round(cycles),
            "invokes_per_window": invokes_per_window, "clock_hz": profile.clock_hz,
            "per_op": per_op, "method": METHOD,
            "cost_model": {"cycles_per_mac_int8": profile.cycles_per_mac_int8,
                           "cycles_per_mac_float32": profile.cycles_per_mac_float32,
                           "cycles_per_mac_int16": profile.cycles_per_mac_int16,
                           "cycles_per_activation": profile.cycles_per_activation,
                           "cycles_per_elementwise": profile.cycles_per_elementwise,
                           "op_overhead_cycles": profile.op_overhead_cycles,
                           "profile": profile.source_file}}


def instructions_to_latency(instructions: int, profile) -> dict:
    """For emulated runners: time from an emulated instruction count (cycles per instruction
    is a profile assumption; QEMU counts instructions, not cycles)."""
    cycles = instructions * profile.cycles_per_instruction
    return {"kind": "emulated", "unit": "us", "value": round(cycles / profile.clock_hz * 1e6, 3),
            "instructions": int(instructions), "cycles": round(cycles),
            "cycles_per_instruction": profile.cycles_per_instruction,
            "method": "emulated instruction count x the profile's cycles per instruction / clock"}
