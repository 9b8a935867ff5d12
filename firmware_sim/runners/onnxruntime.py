"""The onnxruntime runner (CPUExecutionProvider, one thread), including explicit-state stream
models whose h/c are graph inputs and outputs, fed back by the child."""
from __future__ import annotations

import json

import numpy as np

from groundfloor.ioquant import INTEGER_DTYPES

from .base import Runner, drive, finish, load_x, plan_chunks, spec_record

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}


def _session(model_path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def child_onnxruntime(model_path, x_path, out_path, cfg):
    sess = _session(model_path)
    x = load_x(x_path, cfg["max_samples"])
    inputs = sess.get_inputs()
    outputs = sess.get_outputs()
    state_spec = _onnx_state_spec(sess)
    if len(inputs) != 1 and state_spec is None:
        raise ValueError(f"expected one model input, found {len(inputs)} "
                         f"({', '.join(i.name for i in inputs)}) and no state pairing (input/output counts differ)")
    by_name = {i.name: i for i in inputs}
    inp = by_name[state_spec["input"]] if state_spec else inputs[0]
    shape = [s if isinstance(s, int) else (1 if k == 0 else -1) for k, s in enumerate(inp.shape)]
    if -1 in shape:
        shape = [1] + list(x.shape[1:])
    dtype = _ORT_TYPES.get(inp.type, np.float32)
    if np.dtype(dtype).name in INTEGER_DTYPES:
        raise ValueError(f"integer ONNX input {inp.type} without quantization parameters")
    if state_spec:   # explicit state (stream_*.onnx): h/c are graph inputs and outputs, fed back
        out_names = [state_spec["output"]] + [o for _, o, _ in state_spec["state"]]
        st_in = [i for i, _, _ in state_spec["state"]]
        st_shapes = [[d if isinstance(d, int) else 1 for d in by_name[n].shape] for n in st_in]
    else:
        out_names = [o.name for o in outputs]
        st_in, st_shapes = [], []
    state = {"feed": None, "res": None, "h": [np.zeros(s_, np.float32) for s_ in st_shapes]}
    in_spec = (shape, np.dtype(dtype), 0.0, 0)
    out_specs = [(None, None, 0.0, 0) for _ in out_names[:1 if state_spec else None]]

    def invoke():
        feeds = {inp.name: state["feed"]}
        feeds.update(zip(st_in, state["h"]))
        state["res"] = sess.run(out_names, feeds)
        if st_in:
            state["h"] = state["res"][1:]

    def reset():
        state["h"] = [np.zeros(s_, np.float32) for s_ in st_shapes]

    plan = plan_chunks(shape, x)
    arrays = drive(x, plan, in_spec, out_specs,
                   set_input=lambda a: state.__setitem__("feed", a), invoke=invoke,
                   get_output=lambda k: state["res"][k], reset=reset, cfg=cfg)
    info = {"plan": plan, "threads": {"intra_op": 1, "inter_op": 1}, "providers": sess.get_providers(),
            "inputs": [spec_record(in_spec)], "stateless": not state_spec}
    if state_spec:
        info["state"] = {"inputs": st_in, "shapes": st_shapes,
                         "note": "explicit state: each invoke's h/c outputs are fed back as the next inputs; "
                                 "zeros at every reset"}
    return finish(out_path, arrays, info)


def _onnx_state_spec(sess):
    """Explicit-state (streaming) ONNX model: {"input", "output", "state": [[in, out, _], ...]} from the
    stream metadata export/streaming.py writes, else by pairing extra inputs and outputs in order;
    None for a single-input model."""
    from groundfloor.runtime import STREAM_METADATA_KEY
    ins, outs = sess.get_inputs(), sess.get_outputs()
    meta = sess.get_modelmeta().custom_metadata_map
    if STREAM_METADATA_KEY in meta:
        try:
            spec = json.loads(meta[STREAM_METADATA_KEY])
            return {"input": spec["input"], "output": spec["output"], "state": [list(s_) for s_ in spec["state"]]}
        except (ValueError, KeyError, TypeError):
            pass
    if len(ins) == 1 or len(ins) != len(outs):
        return None
    return {"input": ins[0].name, "output": outs[0].name,
            "state": [[i.name, o.name, None] for i, o in zip(ins[1:], outs[1:])]}


class OnnxRuntimeRunner(Runner, name="onnxruntime", formats=("onnx",), child=child_onnxruntime):
    """onnxruntime CPUExecutionProvider, intra/inter op threads 1, sequential."""
    footprint_for = ("onnx",)
