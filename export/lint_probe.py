"""Establish, by converting and running, which Keras RNN configurations reach the fused
TFLite LSTM kernel, which fall back to WHILE loops, and which crash or give wrong results.

    python -m export.lint_probe                 # every case, float32 + int8 + ONNX
    python -m export.lint_probe lstm gru        # only these cases
    python -m export.lint_probe --json out.json # also keep the raw results

Every conversion runs in its own child process (groundfloor.isolate.run_isolated): full-int8
calibration segfaults on WHILE-loop graphs and must cost one row, not the run.
The table this prints is what export/lint_measured.toml records; re-run it when
tensorflow / tf-keras / tf2onnx versions move and update that table.

Models are tf-keras (Keras 2), batch 1, input [1, 16, 3], LSTM(8)-sized, random weights.
Besides the op list, each conversion is run and compared with Keras on one input whose
last 5 steps are zeros (post-padding, so a Masking layer has something to mask): a conversion that
"works" but gives a different answer is reported as wrong, not as converted.
"""
import os
import sys

T, F, U = 16, 3, 8
SEED = 7


# ---------------------------------------------------------------- model builders (tf-keras)
def _builders():
    import tensorflow as tf
    import tf_keras as k
    L = k.layers

    class Swish(L.Layer):            # custom layer whose ops all have TFLite builtins
        def call(self, x):
            return x * tf.math.sigmoid(x)

    class Igamma(L.Layer):           # custom layer using an op with no TFLite builtin
        def call(self, x):
            return tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 0.5)

    def seq(*layers, batch=1, shape=(T, F)):
        return k.Sequential([L.InputLayer(input_shape=shape, batch_size=batch), *layers])

    def lstm(u=True, **kw):
        return L.LSTM(U, unroll=u, **kw)

    def ret_state(u):
        inp = k.Input(shape=(T, F), batch_size=1)
        out, h, c = L.LSTM(U, return_state=True, unroll=u)(inp)
        return k.Model(inp, [L.Dense(1)(out), h, c])

    return {
        # name: (builder(unroll) -> model, is_rnn_case)
        "lstm": (lambda u: seq(lstm(u), L.Dense(1)), True),
        "stacked": (lambda u: seq(lstm(u, return_sequences=True), lstm(u), L.Dense(1)), True),
        "bidirectional": (lambda u: seq(L.Bidirectional(lstm(u)), L.Dense(1)), True),
        "go_backwards": (lambda u: seq(lstm(u, go_backwards=True), L.Dense(1)), True),
        "gru": (lambda u: seq(L.GRU(U, unroll=u), L.Dense(1)), True),
        "simple_rnn": (lambda u: seq(L.SimpleRNN(U, unroll=u), L.Dense(1)), True),
        "rnn_lstmcell": (lambda u: seq(L.RNN(L.LSTMCell(U), unroll=u), L.Dense(1)), True),
        "masking": (lambda u: seq(L.Masking(0.0), lstm(u), L.Dense(1)), True),
        "return_state": (ret_state, True),
        "stateful": (lambda u: seq(lstm(u, stateful=True), L.Dense(1)), True),
        "relu": (lambda u: seq(lstm(u, activation="relu"), L.Dense(1)), True),
        "hard_sigmoid": (lambda u: seq(lstm(u, recurrent_activation="hard_sigmoid"), L.Dense(1)), True),
        "no_bias": (lambda u: seq(lstm(u, use_bias=False), L.Dense(1)), True),
        "recurrent_dropout": (lambda u: seq(lstm(u, recurrent_dropout=0.2), L.Dense(1)), True),
        "dropout": (lambda u: seq(lstm(u, dropout=0.2), L.Dense(1)), True),
        # time_major: input is [T, B, F] = [16, 1, 3]; Keras sees "batch" 16.
        "time_major": (lambda u: seq(lstm(u, time_major=True), L.Dense(1), batch=T, shape=(1, F)), True),
        "custom_swish": (lambda u: seq(Swish(), lstm(u), L.Dense(1)), False),
        "custom_igamma": (lambda u: seq(Igamma(), lstm(u), L.Dense(1)), False),
        "conv1d": (lambda u: seq(L.Conv1D(4, 3, padding="same"), lstm(u), L.Dense(1)), False),
        "around": (lambda u: seq(L.Reshape((T, F)), L.Dense(4), lstm(u, return_sequences=True),
                                 L.Dropout(0.1), L.Flatten(), L.Dense(1)), False),
    }


def _input(name):
    import numpy as np
    rng = np.random.default_rng(0)
    if name == "time_major":
        x = rng.normal(size=(T, 1, F)).astype("float32")
        x[-5:] = 0.0
    else:
        x = rng.normal(size=(1, T, F)).astype("float32")
        x[:, -5:] = 0.0
    return x


def _ops(content):
    """Op names of every subgraph (WHILE bodies included) and the primary subgraph."""
    from ai_edge_litert.interpreter import Interpreter
    from groundfloor import tflite_file
    it = Interpreter(model_content=content)
    primary = sorted({d["op_name"] for d in it._get_ops_details()})
    every = tflite_file.op_names(tflite_file.read("<converted model>", data=content), subgraph=None)
    return primary, sorted(set(every)), len(every)


def _run_tflite(content, x):
    from ai_edge_litert.interpreter import Interpreter
    from groundfloor.ioquant import dequantize_output, io_from_details, quantize_input
    it = Interpreter(model_content=content)
    it.allocate_tensors()
    ind = it.get_input_details()[0]
    it.reset_all_variables()
    it.set_tensor(ind["index"], quantize_input(x, io_from_details(ind)))
    it.invoke()
    return [dequantize_output(it.get_tensor(od["index"]), io_from_details(od)) for od in it.get_output_details()]


def _keras_out(model, x):
    import numpy as np
    if getattr(model, "stateful", False):
        model.reset_states()
    y = model(x, training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(v, dtype="float32") for v in ys]


def _compare(ref, got):
    """Max abs diff matched by shape (TFLite may reorder outputs)."""
    import numpy as np
    worst = 0.0
    pool = list(got)
    for r in ref:
        cands = [j for j, g in enumerate(pool) if g.size == r.size]
        if not cands:
            return float("inf")
        d = [float(np.max(np.abs(pool[j].reshape(-1) - r.reshape(-1)))) for j in cands]
        i = int(np.argmin(d))
        worst = max(worst, d[i])
        pool.pop(cands[i])
    return worst


def _build(name, unroll):
    import tf_keras as k
    k.utils.set_random_seed(SEED)
    builder, _ = _builders()[name]
    return builder(unroll)


def convert_case(name: str, unroll: bool, mode: str) -> dict:
    """Child-process entry: build, convert (mode float32 | int8 | onnx), run, compare."""
    import numpy as np
    import tensorflow as tf
    model = _build(name, unroll)
    x = _input(name)
    ref = _keras_out(model, x)
    # What the model would give if the mask were ignored: same weights, no Masking layer.
    unmasked = None
    if name == "masking":
        import tf_keras as k
        twin = k.Sequential([k.layers.InputLayer(input_shape=(T, F), batch_size=1)] +
                            [k.layers.deserialize({"class_name": l.__class__.__name__,
                                                   "config": l.get_config()}) for l in model.layers[1:]])
        twin.build((1, T, F))
        twin.set_weights(model.get_weights())
        unmasked = _keras_out(twin, x)
    res = {"case": name, "unroll": unroll, "mode": mode}
    if mode == "onnx":
        import tf2onnx
        spec = (tf.TensorSpec(x.shape, tf.float32, name="x"),)
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
        import onnxruntime as ort
        ops = sorted({n.op_type for n in proto.graph.node})
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = [np.asarray(v, dtype="float32") for v in sess.run(None, {sess.get_inputs()[0].name: x})]
        res.update(ops=ops, n_ops=len(proto.graph.node), bytes=len(proto.SerializeToString()))
    else:
        content = _convert(model, x, mode)
        primary, every, n_ops = _ops(content)
        got = _run_tflite(content, x)
        res.update(ops=primary, all_ops=every, n_ops=n_ops, bytes=len(content))
    res["max_abs_diff"] = _compare(ref, got)
    res["ref_scale"] = float(max(np.max(np.abs(r)) for r in ref))
    if unmasked is not None:
        res["diff_vs_unmasked_keras"] = _compare(unmasked, got)
        res["masked_vs_unmasked_keras"] = _compare(unmasked, ref)
    return res


# ---------------------------------------------------------------- lint -> rebuild -> convert
def _convert(model, x, mode):
    """float32, or full int8 calibrated on 16 random windows shaped like x."""
    import numpy as np
    import tensorflow as tf
    from export.tflite import set_full_int8
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        rng = np.random.default_rng(1)
        set_full_int8(conv, lambda: ([rng.normal(size=x.shape).astype("float32")] for _ in range(16)))
    return conv.convert()


def lint_and_convert(names: list, mode: str = "int8") -> dict:
    """Child-process entry used by tests/test_lint.py: for each probe case, lint the plain
    (unroll=False) model, rebuild it as the report says, convert, run, compare with Keras."""
    return {name: _lint_and_convert_one(name, mode) for name in names}


def _lint_and_convert_one(name, mode):
    from export.lint import lint_model
    model = _build(name, False)
    report = lint_model(model)
    from export.keras_bridge import rebuild_batch1
    rebuilt = rebuild_batch1(model, overrides=report.overrides)  # as `edge export` rebuilds it
    x = _input(name)
    ref = _keras_out(model, x)
    import numpy as np
    content = _convert(rebuilt, x, mode)
    _, every, n_ops = _ops(content)
    got = _run_tflite(content, x)
    return {"verdicts": {r.layer: r.verdict for r in report.rows},
            "needs_unroll": report.needs_unroll, "overrides": report.overrides,
            "ops": every, "n_ops": n_ops, "bytes": len(content),
            "max_abs_diff": _compare(ref, got),
            "ref_scale": float(max(np.max(np.abs(r)) for r in ref))}


# ---------------------------------------------------------------- driver (parent process)
def _summary(r):
    if not r.ok:
        err = r.error
        if r.status == "error":
            # keep the telling part of converter errors
            for key in ("error: ", "Some ops are not supported", "requires"):
                if key in err:
                    err = err[err.index(key):]
                    break
        return f"{r.status.upper()}: {err[:160]}"
    v = r.value
    ops = v.get("all_ops", v["ops"])
    if "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops:
        kind = "fused"
    elif "BIDIRECTIONAL_SEQUENCE_LSTM" in ops:
        kind = "fused-bidi"
    elif "WHILE" in ops:
        kind = "WHILE"
    elif "LSTM" in ops or "GRU" in ops or "RNN" in ops:
        kind = "onnx-" + "/".join(o for o in ops if o in ("LSTM", "GRU", "RNN"))
    elif "Loop" in ops or "Scan" in ops:
        kind = "Loop"
    else:
        kind = "flat"
    scale = max(v["ref_scale"], 1e-3)
    tol = 1e-4 if v["mode"] in ("float32", "onnx") else 0.1 * scale + 0.02
    wrong = v["max_abs_diff"] > tol
    s = f"{kind} {v['n_ops']}ops {v['bytes']}B diff={v['max_abs_diff']:.2g}"
    if "diff_vs_unmasked_keras" in v:
        s += f" (vs unmasked {v['diff_vs_unmasked_keras']:.2g})"
    return ("WRONG " if wrong else "") + s


def main(argv=None):
    import json
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from groundfloor.isolate import run_isolated
    argv = list(sys.argv[1:] if argv is None else argv)
    out_json = None
    if "--json" in argv:
        i = argv.index("--json")
        out_json = argv[i + 1]
        del argv[i:i + 2]
    names = argv or list(_builders().keys())
    rows = []
    for name in names:
        is_rnn = _builders()[name][1]
        for unroll in ((False, True) if is_rnn else (False,)):
            for mode in ("float32", "int8", "onnx"):
                r = run_isolated("export.lint_probe:convert_case",
                                 {"name": name, "unroll": unroll, "mode": mode}, timeout=300)
                row = {"case": name, "unroll": unroll, "mode": mode, "status": r.status,
                       "error": r.error, "value": r.value, "summary": _summary(r)}
                rows.append(row)
                print(f"{name:18s} unroll={str(unroll):5s} {mode:7s} {row['summary']}", flush=True)
    if out_json:
        with open(out_json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return rows


if __name__ == "__main__":
    main()
