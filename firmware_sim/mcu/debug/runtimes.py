"""The runtimes on the int8 file (LiteRT, TFLite Micro), and the drift of their outputs.

LiteRT runs with every tensor preserved; TFLite Micro on a copy listing the op outputs as
graph outputs."""
import os
import tempfile

import numpy as np

from firmware_sim.mcu.quant import dequantize
from groundfloor import tflite_file

from .figures import drift, rmse


def run_litert(int8_tflite, x_raw, graph, keep=()):
    """LiteRT with every tensor preserved: raw and dequantized graph output, raw codes of `keep`."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(int8_tflite), num_threads=1, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outd = it.get_output_details()[0]
    to = graph.tensors[graph.outputs[0]]
    outs, kept = [], {k: [] for k in keep}
    for w in x_raw:
        it.reset_all_variables()
        it.set_tensor(inp["index"], w.reshape(inp["shape"]))
        it.invoke()
        outs.append(it.get_tensor(outd["index"]).reshape(-1).copy())
        for k in keep:
            kept[k].append(it.get_tensor(k).copy()[0])
    raw = np.stack(outs).astype(np.int64)
    return {"out_raw": raw, "out": dequantize(raw, to.sc, to.zp),
            "kept": {k: np.stack(v) for k, v in kept.items()}}


def _with_outputs(src, dst, outputs):
    """Copy a .tflite whose subgraph 0 lists `outputs` (tensor indices) as its graph outputs."""
    m = tflite_file.read(src)
    m.subgraphs[0].outputs = np.asarray(outputs, np.int32)
    tflite_file.write(m, dst)


def run_tflm(int8_tflite, x_raw, graph, keep=()):
    """TFLite Micro's codes of the graph outputs and of the `keep` tensors, {index: [N, size]},
    or {"error": why} when it cannot run (no tflite_micro, a crash)."""
    from groundfloor import tflm
    outs = list(graph.outputs) + [k for k in keep if k not in graph.outputs]
    with tempfile.TemporaryDirectory(prefix="edge-debug-tflm-") as tmp:
        model = os.path.join(tmp, "outputs.tflite")
        try:
            _with_outputs(int8_tflite, model, outs)
        except Exception as e:  # an unusual flatbuffer: the check is skipped, not the debugger
            return {"error": f"cannot expose the op outputs: {e}"}
        try:
            res = tflm.run(model, np.asarray(x_raw, np.int8), n_outputs=len(outs), reset_every=1)
        except RuntimeError as e:
            return {"error": str(e)}
        return {idx: y.astype(np.int8) for idx, y in zip(outs, res["outputs"])}


def litert_figures(y_int8, y_float, y_true, u) -> dict:
    """The report's "runtime" block for LiteRT's outputs (u: report units per model unit)."""
    d_rmse, d_max, d_mean = drift(y_int8, y_float)
    out = {"drift_rmse": d_rmse * u, "drift_max": d_max * u, "drift_mean": d_mean * u}
    if y_true is not None:
        out.update(rmse_float=rmse(y_float, y_true) * u, rmse_int8=rmse(y_int8, y_true) * u)
    return out


def tflm_figures(tm, graph, rt, y_float, y_true, u) -> dict:
    """TFLite Micro's drift figures, and how many of its output codes equal LiteRT's."""
    to = graph.tensors[graph.outputs[0]]
    raw = tm[graph.outputs[0]].astype(np.int64)
    n = len(y_float)
    y_tm = dequantize(raw, to.sc, to.zp).reshape(n, -1)
    d_rmse, d_max, _ = drift(y_tm, y_float)
    out = {"tflm_drift_rmse": d_rmse * u, "tflm_drift_max": d_max * u,
           "litert_vs_tflm_output_equal": float(np.mean(raw.reshape(n, -1) == rt["out_raw"]))}
    if y_true is not None:
        out["tflm_rmse_int8"] = rmse(y_tm, y_true) * u
    return out
