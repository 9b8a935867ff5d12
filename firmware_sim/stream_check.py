"""Checks for the streaming (stateful) models: agreement with whole-sequence inference and
long-stream drift, in LiteRT, TFLite Micro and onnxruntime.

- `stream_agreement(artifacts_dir)`: every stream artifact, stepped through the evaluation
  windows (state reset per window), against its whole-sequence counterpart and against the
  Keras float outputs (y_float). Float must agree within FLOAT_TOLERANCE (export.streaming's,
  the tolerance its float twins are built to); int8 within INT8_BOUND_LSB output codes of the
  whole-sequence int8 model (the `from_whole` export route is bit-exact).
- `long_stream_drift(...)`: one unbroken stream of >= 10,000 samples through the float and
  the int8 stream models side by side (no reset), error per window of 1,000 steps, the float
  cell state |c| (computed in numpy from the weights, without the converter's cell clip)
  against the int8 model's int16 cell range, how often that int16 state sits at its limit,
  and how many inputs fall outside the int8 input range. Optionally the same in TFLite Micro.
  The signal comes from the caller (the bench gets it from the app: edge.tasks).

Everything returns plain JSON-able dicts; per-window lists are there for a drift plot.
TFLite Micro runs in a child process (a too-small arena segfaults).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from export.streaming import FLOAT_TOLERANCE
from groundfloor import tflite_file
from groundfloor.ioquant import dequantize_output, quantize_clipped
from groundfloor.metrics import error_metrics

INT8_BOUND_LSB = 1       # stream int8 vs whole int8, in output quantization steps
WINDOW = 1000


# --------------------------------------------------------------------------- small helpers

def _err(ref, out) -> dict:
    """The drift figures the stream checks keep: n, max_abs and rmse (groundfloor.metrics)."""
    m = error_metrics(ref, out)
    return {"n": m["n"], "max_abs": m.get("max_abs"), "rmse": m.get("rmse")}


def _int8_range(io) -> list[float]:
    """The real values of the int8 codes -128 and 127 through an I/O record."""
    return [(-128 - io["zero_point"]) * io["scale"], (127 - io["zero_point"]) * io["scale"]]


def _lstm_ops(model) -> list[dict]:
    g = model.subgraphs[0]
    names = tflite_file.builtin_names()
    out = []
    for op in g.operators or []:
        if tflite_file.op_name(model, op, names) != "UNIDIRECTIONAL_SEQUENCE_LSTM":
            continue
        ins = [int(i) for i in op.inputs]
        cell = g.tensors[ins[19]]
        scale, _ = tflite_file.qparams(cell)
        out.append({"inputs": ins, "h_index": ins[18], "c_index": ins[19], "units": int(cell.shape[-1]),
                    "cell_dtype": tflite_file.dtype_name(cell),
                    "cell_scale": None if scale is None else float(scale[0]),
                    "cell_clip": float(op.builtinOptions.cellClip)})
    return out


def lstm_ops(path) -> list[dict]:
    """The fused LSTM ops of a .tflite file: weight/bias/state tensor indices, state quantization."""
    return _lstm_ops(tflite_file.read(path))


def float_lstm_weights(path) -> list[dict]:
    """Per fused LSTM layer of a float .tflite: W [4, units, in], R [4, units, units], b [4, units]
    in gate order input, forget, cell, output."""
    model = tflite_file.read(path)
    g = model.subgraphs[0]

    def arr(i):
        return tflite_file.tensor_data(model, g.tensors[i])

    layers = []
    for op in _lstm_ops(model):
        ins = op["inputs"]
        if min(ins[1:9] + ins[12:16]) < 0:
            raise ValueError("LSTM without input gate (CIFG) or missing weights: not supported here")
        layers.append({"W": np.stack([arr(i) for i in ins[1:5]]), "R": np.stack([arr(i) for i in ins[5:9]]),
                       "b": np.stack([arr(i) for i in ins[12:16]])})
    return layers


def numpy_lstm_states(layers, signal, per_layer: bool = False):
    """Run the stacked LSTM in float64 from zero state (no cell clip): per step, per layer h and c.
    Returns (h_last [S, units of last layer], c_absmax [S] over all layers) and, with per_layer,
    also c_absmax per layer [S, layers]."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    hs = [np.zeros(l["R"].shape[1]) for l in layers]
    cs = [np.zeros(l["R"].shape[1]) for l in layers]
    W = [l["W"].astype(np.float64) for l in layers]
    R = [l["R"].astype(np.float64) for l in layers]
    b = [l["b"].astype(np.float64) for l in layers]
    h_last = np.zeros((len(signal), len(hs[-1])))
    c_max = np.zeros(len(signal))
    c_layer = np.zeros((len(signal), len(layers)))
    for t, x in enumerate(np.asarray(signal, np.float64)):
        inp = x
        for k in range(len(layers)):
            z = W[k] @ inp + R[k] @ hs[k] + b[k]
            c = sig(z[1]) * cs[k] + sig(z[0]) * np.tanh(z[2])
            h = sig(z[3]) * np.tanh(c)
            hs[k], cs[k] = h, c
            c_layer[t, k] = float(np.max(np.abs(c)))
            inp = h
        h_last[t] = hs[-1]
        c_max[t] = c_layer[t].max()
    if per_layer:
        return h_last, c_max, c_layer
    return h_last, c_max


# --------------------------------------------------------------------------- LiteRT

def _litert(path):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


def litert_stream(path, signal, read_state=True) -> dict:
    """Push signal [S, F] through a stream .tflite without reset. Returns native outputs, and
    per step the last LSTM's h and every LSTM's cell state (native dtype) when asked."""
    from groundfloor import runtime
    m = runtime.load(path)
    it = _litert(path)
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    x, clipped = quantize_clipped(np.asarray(signal, np.float32).reshape(len(signal), 1, 1, -1), m.input_io)
    ops = lstm_ops(path) if read_state else []
    ys, hs, cs = [], [], []
    it.reset_all_variables()
    for step in x:
        it.set_tensor(ind["index"], step)
        it.invoke()
        ys.append(it.get_tensor(outd["index"]).copy())
        if ops:
            hs.append(it.get_tensor(ops[-1]["h_index"]).reshape(-1).copy())
            cs.append(np.concatenate([it.get_tensor(o["c_index"]).reshape(-1) for o in ops]))
    out = {"y": np.stack(ys).reshape(len(x), -1), "io_in": m.input_io, "io_out": m.output_io,
           "clipped": clipped, "ops": ops}
    if ops:
        out["h"], out["c"] = np.stack(hs), np.stack(cs)
    return out


# --------------------------------------------------------------------------- TFLite Micro

def tflm_run(model_path, x_native, reset_every=0, arena_size=None, timeout=600.0):
    """Outputs of TFLite Micro for every x_native[i] (already in the model's dtype and input shape)."""
    from groundfloor import tflm
    return tflm.run(model_path, x_native, reset_every=reset_every, arena_size=arena_size or 0,
                    timeout=timeout)["outputs"][0]


# --------------------------------------------------------------------------- (a) agreement

_PAIRS = [("stream_float32.tflite", "model_float32.tflite", "float"),
          ("stream_int8.tflite", "model_int8.tflite", "int8"),
          ("stream_float32.onnx", "model_float32.onnx", "float"),
          ("stream_dynamic_int8.onnx", "model_dynamic_int8.onnx", "dynamic_int8")]


def _max_lsb(a, b) -> int:
    return int(np.max(np.abs(np.asarray(a).astype(np.int32) - np.asarray(b).astype(np.int32))))


def _tflm_agreement(d: Path, s_name, w_name, s, w, x, kind, add, rows):
    """The stream file and its whole-sequence counterpart in TFLite Micro (one row)."""
    steps = x.shape[1]
    xs, _ = quantize_clipped(x.reshape(-1, 1, 1, x.shape[-1]), s.input_io)
    xw, _ = quantize_clipped(x[:, None], w.input_io)
    qs = tflm_run(d / s_name, xs, reset_every=steps).reshape(len(x), steps, -1)[:, -1]
    qw = tflm_run(d / w_name, xw, reset_every=1).reshape(len(x), -1)
    ys_m, yw_m = dequantize_output(qs, s.output_io), dequantize_output(qw, w.output_io)
    add("tflm", s_name, w_name, ys_m, yw_m, kind, _max_lsb(qs, qw) if kind == "int8" else None)
    if kind == "int8":  # TFLM and LiteRT on the same stream file
        rows[-1]["vs_litert_stream_lsb"] = _max_lsb(qs.reshape(len(x), -1), s.predict(x, raw=True).reshape(len(x), -1))


def stream_agreement(artifacts_dir, x=None, y_float=None, n: int | None = 64, tflm: bool = True) -> dict:
    """Stream vs whole-sequence outputs on evaluation windows, per runner. Float within
    FLOAT_TOLERANCE; TFLite int8 within INT8_BOUND_LSB output codes of model_int8.tflite."""
    from groundfloor import runtime
    d = Path(artifacts_dir)
    if x is None:
        z = np.load(d / "data.npz")
        x = z["x_eval"]
        y_float = z["y_float"] if "y_float" in z.files else None
    x = np.asarray(x, np.float32)[:n]
    if y_float is not None:
        y_float = np.asarray(y_float, np.float32)[:n]
    rows = []

    def add(runner, stream, whole, ys, yw, kind, lsb=None):
        row = {"runner": runner, "stream": stream, "whole": whole, "kind": kind, "windows": int(len(x))}
        if yw is not None:
            row.update(_err(yw, ys))
        if lsb is not None:
            row["max_lsb"] = lsb
        if y_float is not None:
            row["vs_keras"] = _err(y_float, ys)
        if kind == "float" and yw is not None:
            row["bound"], row["ok"] = FLOAT_TOLERANCE, bool(row["max_abs"] <= FLOAT_TOLERANCE)
        elif kind == "int8" and lsb is not None:
            row["bound_lsb"], row["ok"] = INT8_BOUND_LSB, bool(lsb <= INT8_BOUND_LSB)
        rows.append(row)

    for s_name, w_name, kind in _PAIRS:
        if not (d / s_name).exists():
            continue
        runner = "litert" if s_name.endswith(".tflite") else "onnxruntime"
        s = runtime.load(d / s_name)
        ys = s.predict(x)
        whole = d / w_name if (d / w_name).exists() else None
        if whole is None and kind == "float" and y_float is not None:
            # no whole-sequence file of this format: the Keras model is the whole-sequence reference
            add(runner, s_name, "keras (y_float)", ys, y_float, kind)
            continue
        if whole is None:
            add(runner, s_name, None, ys, None, kind)
            continue
        w = runtime.load(whole)
        yw = w.predict(x)
        lsb = _max_lsb(s.predict(x, raw=True), w.predict(x, raw=True)) if kind == "int8" else None
        add(runner, s_name, w_name, ys, yw, kind, lsb)
        if tflm and s_name.endswith(".tflite"):
            _tflm_agreement(d, s_name, w_name, s, w, x, kind, add, rows)
    checked = [r["ok"] for r in rows if "ok" in r]
    return {"rows": rows, "ok": bool(all(checked)) if checked else None,
            "float_tolerance": FLOAT_TOLERANCE, "int8_bound_lsb": INT8_BOUND_LSB}


# --------------------------------------------------------------------------- (b, c) long stream

def _trend(rmse_per_window):
    r = np.asarray([v for v in rmse_per_window if v is not None], np.float64)
    if len(r) < 4:
        return {"verdict": "too short"}
    k = max(2, len(r) // 4)
    first, last = float(np.mean(r[:k])), float(np.mean(r[-k:]))
    slope = float(np.polyfit(np.arange(len(r)), r, 1)[0])
    ratio = last / first if first > 0 else None
    if ratio is not None and ratio > 2.0 and slope > 0:
        verdict = "grows"
    elif ratio is not None and ratio < 1.5:
        verdict = "flat"
    else:
        verdict = "bounded"
    return {"verdict": verdict, "first_quarter_rmse": first, "last_quarter_rmse": last,
            "ratio_last_first": ratio, "slope_per_window": slope, "max_window_rmse": float(np.max(r))}


def _int8_cell_state(q: dict, S: int) -> dict:
    """The int8 model's cell state per step: its int16 range per layer, max |c| in real units and
    where it sits at the int16 limit."""
    ops_q = q["ops"]
    cell_scales = [o["cell_scale"] for o in ops_q]
    c_q = q["c"].astype(np.int32)
    c_q_absmax = np.zeros(S)
    offset = 0
    for o, s in zip(ops_q, cell_scales):
        c_q_absmax = np.maximum(c_q_absmax, np.max(np.abs(c_q[:, offset:offset + o["units"]]), axis=1) * (s or 1.0))
        offset += o["units"]
    return {"scales": cell_scales, "ranges": [32767 * s if s else None for s in cell_scales],
            "at_limit": np.abs(c_q) >= 32767, "absmax": c_q_absmax}


def _windows(S, window, y_f, y_q, y_m, y_fc, cmax_np, cell, clipped) -> list[dict]:
    wins = []
    for a in range(0, S - window + 1, window):
        b = a + window
        w = {"start": a, "litert": _err(y_f[a:b], y_q[a:b]),
             "float_max_abs_c": float(np.max(cmax_np[a:b])),
             "int8_max_abs_c": float(np.max(cell["absmax"][a:b])),
             "int8_cell_at_limit_fraction": float(np.mean(cell["at_limit"][a:b])),
             "input_clipped_fraction": float(np.mean(clipped[a:b]))}
        if y_m is not None:
            w["tflm"] = _err(y_f[a:b], y_m[a:b])
        w["litert_vs_float_on_clipped_input"] = _err(y_fc[a:b], y_q[a:b]) if y_fc is not None else w["litert"]
        wins.append(w)
    return wins


def _per_window(wins: list, tflm: bool) -> dict:
    return {
        "start": [w["start"] for w in wins],
        "litert_rmse": [w["litert"]["rmse"] for w in wins],
        "litert_max_abs": [w["litert"]["max_abs"] for w in wins],
        "litert_rmse_vs_float_on_clipped_input": [w["litert_vs_float_on_clipped_input"]["rmse"] for w in wins],
        "tflm_rmse": [w["tflm"]["rmse"] for w in wins] if tflm else None,
        "float_max_abs_c": [w["float_max_abs_c"] for w in wins],
        "int8_max_abs_c": [w["int8_max_abs_c"] for w in wins],
        "int8_cell_at_limit_fraction": [w["int8_cell_at_limit_fraction"] for w in wins],
        "input_clipped_fraction": [w["input_clipped_fraction"] for w in wins],
    }


def long_stream_drift(stream_float_path, stream_int8_path, signal, window: int = WINDOW,
                      tflm: bool = True, tflm_arena_size=None, label: str = "") -> dict:
    """Run one unbroken stream (no reset) through the float and int8 stream models.

    signal: [S] or [S, F] (model units, e.g. standardized). Reference = the float stream model
    in LiteRT. Reports per window: RMSE/max-abs of int8 vs float (LiteRT and, with tflm,
    TFLite Micro), max |c| of the float cell (numpy, no cell clip), fraction of int8 cell
    state values at the int16 limit, fraction of inputs clipped by the int8 input range.
    """
    signal = np.asarray(signal, np.float32)
    if signal.ndim == 1:
        signal = signal[:, None]
    S = len(signal)
    ref = litert_stream(stream_float_path, signal)
    q = litert_stream(stream_int8_path, signal)
    y_f = dequantize_output(ref["y"], ref["io_out"])
    y_q = dequantize_output(q["y"], q["io_out"])
    layers = float_lstm_weights(stream_float_path)
    h_np, cmax_np, clayer_np = numpy_lstm_states(layers, signal, per_layer=True)
    numpy_check = float(np.max(np.abs(h_np - ref["h"])))  # validates the numpy cell (while |c| < clip)
    cell = _int8_cell_state(q, S)
    clipped = q["clipped"].reshape(S, -1) if isinstance(q["clipped"], np.ndarray) else np.zeros((S, 1), bool)

    # Error split: the int8 model sees inputs clipped to its input range; the float model fed
    # the same clipped inputs shows how much of the error is the clipping, not the arithmetic.
    lo, hi = _int8_range(q["io_in"])
    y_fc = None
    if np.any(clipped):
        y_fc = dequantize_output(litert_stream(stream_float_path, np.clip(signal, lo, hi), read_state=False)["y"],
                                 ref["io_out"])
    y_m = None
    tflm_info = None
    if tflm:
        xq, _ = quantize_clipped(signal.reshape(S, 1, 1, -1), q["io_in"])
        qm = tflm_run(stream_int8_path, xq, reset_every=0, arena_size=tflm_arena_size)
        y_m = dequantize_output(qm.reshape(S, -1), q["io_out"])
        tflm_info = {"vs_litert_int8_max_lsb": _max_lsb(qm.reshape(S, -1), q["y"].reshape(S, -1)),
                     "vs_float": _err(y_f, y_m)}
    wins = _windows(S, window, y_f, y_q, y_m, y_fc, cmax_np, cell, clipped)
    litert_rmse = [w["litert"]["rmse"] for w in wins]
    ops_q = q["ops"]
    return {
        "label": label, "steps": int(S), "window": int(window), "features": int(signal.shape[1]),
        "signal_range": [float(signal.min()), float(signal.max())],
        "int8_input_range": [float(v) for v in _int8_range(q["io_in"])],
        "int8_output_range": [float(v) for v in _int8_range(q["io_out"])],
        "overall": {"litert": _err(y_f, y_q), "tflm": tflm_info,
                    "litert_vs_float_on_clipped_input": _err(y_fc, y_q) if y_fc is not None else _err(y_f, y_q)},
        "float_max_abs_c": float(np.max(cmax_np)),
        "float_max_abs_c_step": int(np.argmax(cmax_np)),
        "float_max_abs_c_per_layer": [float(v) for v in clayer_np.max(axis=0)],
        "cell_range_used_per_layer": [float(c / r) if r else None
                                      for c, r in zip(clayer_np.max(axis=0), cell["ranges"])],
        "float_cell_clip": ops_q[0]["cell_clip"] if ops_q else None,
        "int16_cell_range": cell["ranges"],
        "int16_cell_scale": cell["scales"],
        "int8_max_abs_c": float(np.max(cell["absmax"])),
        "int8_cell_at_limit_fraction": float(np.mean(cell["at_limit"])),
        "input_clipped_fraction": float(np.mean(clipped)),
        "numpy_vs_litert_float_h_max_abs": numpy_check,
        "trend_litert": _trend(litert_rmse),
        "trend_tflm": _trend([w["tflm"]["rmse"] for w in wins]) if y_m is not None else None,
        "per_window": _per_window(wins, y_m is not None),
    }


def summarize_long_stream(r: dict) -> dict:
    """The figures a report needs from one long_stream_drift result, with a verdict:
    "saturates" (the int8 cell state sits at its int16 limit or the float |c| exceeds the int16
    range), "grows", or "stays bounded"."""
    ranges = [v for v in (r.get("int16_cell_range") or []) if v]
    used = [v for v in (r.get("cell_range_used_per_layer") or []) if v is not None]
    used_max = max(used) if used else (r["float_max_abs_c"] / min(ranges) if ranges else None)
    trend = (r.get("trend_litert") or {}).get("verdict")
    pw = r.get("per_window") or {}
    rm = [v for v in (pw.get("litert_rmse") or []) if v is not None]
    med = float(np.median(rm)) if rm else None
    peak = int(np.argmax(rm)) if rm else None
    if r.get("int8_cell_at_limit_fraction", 0) > 0 or (used_max is not None and used_max >= 1.0):
        verdict = "saturates"
    elif trend == "grows":
        verdict = "grows"
    elif trend in ("flat", "bounded"):
        verdict = f"stays bounded ({trend})"
        last = (r.get("trend_litert") or {}).get("last_quarter_rmse")
        if med and rm[peak] > 3 * med and last is not None and last <= 1.5 * med:
            verdict = (f"stays bounded (one excursion: window rmse {rm[peak]:.3g} at step "
                       f"{pw['start'][peak]:,}, back to the median {med:.3g} afterwards)")
    else:
        verdict = trend or "unknown"
    tflm = (r.get("overall") or {}).get("tflm") or {}
    return {"steps": r["steps"], "window": r["window"], "windows": len((r.get("per_window") or {}).get("start") or []),
            "rmse_litert": r["overall"]["litert"]["rmse"], "max_abs_litert": r["overall"]["litert"]["max_abs"],
            "rmse_tflm": (tflm.get("vs_float") or {}).get("rmse"), "tflm_vs_litert_max_lsb": tflm.get("vs_litert_int8_max_lsb"),
            "rmse_on_clipped_input": r["overall"]["litert_vs_float_on_clipped_input"]["rmse"],
            "trend": trend, "trend_tflm": (r.get("trend_tflm") or {}).get("verdict"), "verdict": verdict,
            "median_window_rmse": med, "max_window_rmse": rm[peak] if rm else None,
            "max_window_start": pw["start"][peak] if rm else None,
            "ratio_last_first": (r.get("trend_litert") or {}).get("ratio_last_first"),
            "float_max_abs_c": r["float_max_abs_c"], "float_max_abs_c_per_layer": r.get("float_max_abs_c_per_layer"),
            "int16_cell_range": r.get("int16_cell_range"),
            "cell_range_used_pct": None if used_max is None else round(100.0 * used_max, 2),
            "int8_max_abs_c": r.get("int8_max_abs_c"), "int8_cell_at_limit_fraction": r.get("int8_cell_at_limit_fraction"),
            "input_clipped_fraction": r.get("input_clipped_fraction"), "float_cell_clip": r.get("float_cell_clip")}


def bench_long_stream(stream_float_path, stream_int8_path, signal_path, signal_info=None, window: int = WINDOW,
                      tflm: bool = True) -> dict:
    """Child-process entry point for the bench: the signal (an .npy [S] or [S, F], model units)
    through the float and int8 stream models; returns {"signal", "result", "summary"}. signal_info
    says what the signal is (the app's description of its series); without it, "given signal"."""
    sig = np.load(signal_path).astype(np.float32)
    sig = sig[:, None] if sig.ndim == 1 else sig
    info = dict(signal_info) if signal_info else {"status": "ok", "name": "given signal", "rows": int(len(sig)),
                                                  "passes": 1, "description": "signal passed to the bench (model units)"}
    r = long_stream_drift(stream_float_path, stream_int8_path, sig, window=window, tflm=tflm, label=info.get("name", ""))
    return {"status": "ok", "signal": info, "result": r, "summary": summarize_long_stream(r)}
