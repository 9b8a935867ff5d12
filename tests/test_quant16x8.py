"""16x8 (int16 activations, int8 weights) fused LSTM by flatbuffer rewrite (export/quant16x8.py).

A tiny tf-keras LSTM(8) -> Dense(1) on [1, 8, 2] windows is converted to full int8 by the
TFLite converter (in a child process, cached in pytest's cache), rewritten to 16x8, and both
are run in TFLite Micro against the float Keras model: the 16x8 model must run and drift less.
A tiny classifier, LSTM(8) -> Dense(3, softmax), checks the int16 softmax head (output scale
1/32768, zero point 0, SOFTMAX version 3): TFLite Micro runs it, its probabilities sum to one.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from child_build import built_in_child
from tiny_keras import tiny_lstm

pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_litert")

T, F, UNITS, N_CALIB, N_EVAL, CLASSES = 8, 2, 8, 64, 48, 3
FILES = ["model.h5", "int8.tflite", "data.npz", "cls.h5", "cls_int8.tflite"]


def build(out: Path):
    """Tiny model, its data and its converter full-int8 model (in a child: child_build)."""
    import tensorflow as tf
    from export.tflite import representative_windows, set_full_int8
    rng = np.random.default_rng(0)
    model = tiny_lstm(T, F, UNITS)
    k, r, b = model.layers[0].get_weights()
    b[:] = rng.uniform(-0.5, 0.5, b.shape)
    b[UNITS:2 * UNITS] += 1.0
    model.layers[0].set_weights([k, r, b])
    kd, bd = model.layers[1].get_weights()
    model.layers[1].set_weights([kd, np.array([0.1], np.float32)])  # a non-zero Dense bias
    n = N_CALIB + N_EVAL
    t = np.linspace(0.0, 1.0, T)[None, :, None]
    x = (np.sin(2 * np.pi * rng.uniform(0.5, 3, (n, 1, F)) * t + rng.uniform(0, 6, (n, 1, F)))
         * rng.uniform(0.5, 2, (n, 1, F)) + 0.1 * rng.standard_normal((n, T, F))).astype(np.float32)
    model.save(out / "model.h5")
    np.savez(out / "data.npz", x_calib=x[:N_CALIB], x_eval=x[N_CALIB:])
    classifier = _tiny_classifier(rng)
    classifier.save(out / "cls.h5")
    for m, name in ((model, "int8"), (classifier, "cls_int8")):
        c = tf.lite.TFLiteConverter.from_keras_model(m)
        set_full_int8(c, representative_windows(x[:N_CALIB]))
        (out / f"{name}.tflite").write_bytes(c.convert())


def _tiny_classifier(rng):
    """LSTM(UNITS) -> Dense(CLASSES, softmax), untrained but with logits spread over a few units
    (a scaled Dense kernel), so every class wins on some windows."""
    from export.tfenv import seed_everything, tf_and_keras2
    tf, K = tf_and_keras2()
    seed_everything(1)
    model = K.Sequential([K.layers.InputLayer(input_shape=(T, F), batch_size=1), K.layers.LSTM(UNITS),
                          K.layers.Dense(CLASSES, activation="softmax")])
    kd, bd = model.layers[1].get_weights()
    model.layers[1].set_weights([4.0 * kd, rng.uniform(-0.3, 0.3, bd.shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def tiny16(request):
    return built_in_child(request, "tiny_16x8", build, (T, F, UNITS, N_CALIB, N_EVAL), FILES)


@pytest.fixture(scope="module")
def converted(tiny16, tmp_path_factory):
    out = tmp_path_factory.mktemp("q16") / "model_16x8.tflite"
    return out, _convert16(tiny16, "int8.tflite", "model.h5", out)


def _convert16(folder, int8_name, h5_name, out, **options):
    """export.quant16x8.convert_16x8 in a child (as the export runs it); its record."""
    from groundfloor.isolate import run_isolated
    r = run_isolated("export.quant16x8:convert_16x8",
                     {"int8_tflite_path": str(folder / int8_name), "float_model_h5": str(folder / h5_name),
                      "calib_npz": str(folder / "data.npz"), "out_path": str(out), **options}, timeout=600)
    assert r.ok, f"{r.error}\n{r.stderr_tail}"
    return r.value


@pytest.fixture(scope="module")
def evaluated(tiny16, converted, tmp_path_factory):
    from export.quant16x8 import evaluate
    out, _ = converted
    return evaluate(tiny16 / "int8.tflite", out, tiny16 / "model.h5", tiny16 / "data.npz",
                    tmp_path_factory.mktemp("q16eval"), arena=False)


def test_rewrite_types_scales_and_biases(converted):
    from groundfloor.tflite_file import parse
    out, rec = converted
    g = parse(out)
    lstm = next(op for op in g.ops if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    fc = next(op for op in g.ops if op.kind == "FULLY_CONNECTED")
    assert lstm.version == 5 and fc.version == 7
    for i in g.inputs + g.outputs + [lstm.inputs[18], lstm.outputs[0]]:
        t = g.tensors[i]
        assert t.dtype == "INT16" and t.zp == 0, (t.name, t.dtype, t.zp)
    h, seq = g.tensors[lstm.inputs[18]], g.tensors[lstm.outputs[0]]
    assert h.is_variable and h.sc == seq.sc  # the kernel memcpy's h into the output sequence
    assert h.sc == pytest.approx(2.0 ** -15, rel=1e-6)  # hidden="unit" (the default)
    c = g.tensors[lstm.inputs[19]]
    assert c.dtype == "INT16" and np.log2(c.sc) == round(np.log2(c.sc))
    for k in (1, 2, 3, 4, 5, 6, 7, 8):
        assert g.tensors[lstm.inputs[k]].dtype == "INT8"
    x = g.tensors[lstm.inputs[0]]
    for bslot, wslot in ((12, 1), (13, 2), (14, 3), (15, 4)):
        b, w = g.tensors[lstm.inputs[bslot]], g.tensors[lstm.inputs[wslot]]
        assert b.dtype == "INT64" and b.data is not None and b.data.shape == (UNITS,)
        assert b.sc == pytest.approx(x.sc * w.sc, rel=1e-6)
    fb = g.tensors[fc.inputs[2]]
    assert fb.dtype == "INT64"
    # float bias recovered: Keras Dense bias 0.1 at input_scale * weight_scale
    assert float(fb.data[0]) * fb.sc == pytest.approx(0.1, abs=fb.sc)
    assert all(b["source"] == "keras" for b in rec["biases"]), rec["biases"]
    assert rec["bytes"] == out.stat().st_size and rec["notes"] == []


def test_tflm_runs_16x8_and_drifts_less_than_int8(evaluated):
    ev = evaluated
    q8, q16 = ev["int8"], ev["int16x8"]
    assert "error" not in q16, q16
    assert q16["n"] == N_EVAL and q16["saturated_outputs"] == 0
    assert q16["arena_reported"] and q16["arena_reported"] < 16 * 1024
    # the point of 16x8: markedly lower drift against the float model
    assert q16["rmse"] < 0.5 * q8["rmse"], (q16, q8)
    assert q16["max_abs"] < q8["max_abs"], (q16, q8)
    # and it lands near the int8-weight floor (float activations, the same int8 weights):
    # what is left is the int16 activation arithmetic, far below the int8 activations' error
    floor = ev["float_int8_weights"]
    assert q16["vs_float_int8_weights"]["rmse"] < 0.25 * q8["vs_float_int8_weights"]["rmse"]
    assert q16["rmse"] < floor["rmse"] + 0.5 * (q8["rmse"] - floor["rmse"])


def test_litert_verdict_is_recorded(evaluated, tiny16):
    # LiteRT (ai-edge-litert 2.3.0) has no 16x8 sequence-LSTM kernel: it refuses op version 5
    # (FIELD_NOTES), while it runs the int8 model the rewrite started from
    lr = evaluated["litert_16x8"]
    assert lr["ok"] is False
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in lr["error"] and "version '5'" in lr["error"], lr
    from groundfloor.isolate import run_isolated
    r = run_isolated("export.quant16x8:check_litert", {"tflite_path": str(tiny16 / "int8.tflite")}, timeout=120)
    assert r.ok and r.value == {"ok": True, "error": ""}


def test_float_ranges_option(tiny16, tmp_path):
    value = _convert16(tiny16, "int8.tflite", "model.h5", tmp_path / "f.tflite", ranges="float", hidden="calibrated")
    from groundfloor.tflite_file import parse
    g = parse(tmp_path / "f.tflite")
    lstm = next(op for op in g.ops if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    ranges = {t["index"]: t["range"][1] for t in value["tensors"]}
    x = np.load(tiny16 / "data.npz")["x_calib"]
    assert ranges[g.inputs[0]] == pytest.approx(1.25 * float(np.abs(x).max()), rel=1e-6)
    assert 0 < ranges[lstm.outputs[0]] == ranges[lstm.inputs[18]] < 1
    assert g.tensors[lstm.inputs[18]].sc < 2.0 ** -15  # finer than the unit range


@pytest.fixture(scope="module")
def classifier16(tiny16, tmp_path_factory):
    """The tiny classifier through the pipeline's entry point (int8 ranges, Keras biases): no
    NotApplicable for its SOFTMAX any more."""
    from groundfloor.isolate import run_isolated
    out = tmp_path_factory.mktemp("q16cls") / "cls_16x8.tflite"
    r = run_isolated("export.quant16x8:convert_artifact",
                     {"src": str(tiny16 / "cls_int8.tflite"), "out_path": str(out),
                      "model_path": str(tiny16 / "cls.h5"), "calib_path": str(tiny16 / "data.npz")},
                     timeout=600)
    assert r.ok, f"{r.error}\n{r.stderr_tail}"
    return out, r.value


def test_classifier_softmax_head_is_int16_at_the_kernels_fixed_scale(classifier16):
    from groundfloor.tflite_file import parse
    out, rec = classifier16
    g = parse(out)
    kinds = [op.kind for op in g.ops]
    assert kinds[-2:] == ["FULLY_CONNECTED", "SOFTMAX"], kinds
    fc, soft = g.ops[-2], g.ops[-1]
    assert soft.version == 3 and fc.version == 7
    assert rec["options"]["op_versions"]["SOFTMAX"] == {"from": 2, "to": 3}
    logits, probs = g.tensors[soft.inputs[0]], g.tensors[soft.outputs[0]]
    assert soft.inputs[0] == fc.outputs[0] and soft.outputs[0] == g.outputs[0]
    assert probs.dtype == "INT16" and probs.sc == 2.0 ** -15 and probs.zp == 0
    assert logits.dtype == "INT16" and logits.zp == 0 and logits.sc < 2.0 ** -12
    assert g.tensors[fc.inputs[2]].dtype == "INT64"
    assert rec["notes"] == []


def test_tflm_runs_the_16x8_classifier_like_the_float_model(tiny16, classifier16, tmp_path):
    from export.quant16x8 import evaluate
    out, _ = classifier16
    ev = evaluate(tiny16 / "cls_int8.tflite", out, tiny16 / "cls.h5", tiny16 / "data.npz", tmp_path,
                  arena=False)
    q8, q16 = ev["int8"], ev["int16x8"]
    assert "error" not in q16, q16
    assert q16["n"] == N_EVAL and q16["rmse"] < q8["rmse"], (q16, q8)
    y16 = np.load(tmp_path / "y_int16x8.npz")
    yf, ywq = (np.load(tmp_path / f"y_{k}.npz")["y"] for k in ("float", "wq"))
    y8 = np.load(tmp_path / "y_int8.npz")["y"].reshape(yf.shape)
    # per window against the same int8 weights in float: the int16 activations' error is a small
    # fraction of the int8 ones' (one window whose logits pass the calibrated range saturates
    # both alike, so the median, not the max)
    err16, err8 = (np.abs(y.reshape(yf.shape) - ywq).max(axis=1) for y in (y16["y"], y8))
    assert np.median(err16) < 0.1 * np.median(err8), (np.median(err16), np.median(err8))
    assert np.all(np.abs(y16["raw"].sum(axis=-1) - 32768) <= 8)     # probabilities in Q0.15
    assert len(np.unique(yf.argmax(axis=1))) == CLASSES              # every class wins somewhere
    assert np.mean(y16["y"].reshape(yf.shape).argmax(axis=1) == yf.argmax(axis=1)) >= 0.95


def test_float_ranges_take_the_logits_range_not_the_probabilities(tiny16, tmp_path):
    """ranges="float" measures the Dense's pre-softmax output (what the FC op computes): about
    the range the int8 calibration gave the logits, widened by the headroom, far beyond 1."""
    from groundfloor.tflite_file import parse
    value = _convert16(tiny16, "cls_int8.tflite", "cls.h5", tmp_path / "f.tflite", ranges="float")
    g = parse(tmp_path / "f.tflite")
    fc, soft = g.ops[-2], g.ops[-1]
    t = next(t for t in value["tensors"] if t["index"] == fc.outputs[0])
    int8_amax = max(abs((-128 - t["int8"][1]) * t["int8"][0]), abs((127 - t["int8"][1]) * t["int8"][0]))
    assert t["range"][1] > 2.0 and t["range"][1] == pytest.approx(1.25 * int8_amax, rel=0.1)
    assert g.tensors[soft.outputs[0]].sc == 2.0 ** -15


def test_refuses_bad_input(tiny16, tmp_path):
    from export.quant16x8 import convert_16x8
    with pytest.raises(ValueError, match="ranges"):
        convert_16x8(tiny16 / "int8.tflite", None, None, tmp_path / "x.tflite", ranges="minmax")
    with pytest.raises(ValueError, match="float_model_h5"):
        convert_16x8(tiny16 / "int8.tflite", None, None, tmp_path / "x.tflite", ranges="float")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
