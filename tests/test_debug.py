"""The per-layer drift debugger on tiny LSTMs: clipping arithmetic, a deliberately
mis-scaled layer, and the integer reference (firmware_sim.mcu.reference, with its
intermediate capture) against TFLite Micro and LiteRT."""
import numpy as np
import pytest

from groundfloor.isolate import run_isolated
from export import ranges
from firmware_sim.mcu.debug import debug

T, F, U = 12, 2, 8


def _build(path, outlier=None, seed=0):
    from export.tfenv import seed_everything, tf_and_keras2
    tf, K = tf_and_keras2()
    seed_everything(seed)
    inp = K.Input((T, F), batch_size=1)
    h = K.layers.LSTM(U, name="lstm")(inp)
    out = K.layers.Dense(1, name="dense")(h)
    m = K.Model(inp, out)
    if outlier is not None:
        # one huge input->forget weight: the per-tensor int8 scale of the forget-gate input
        # matrix becomes outlier/127 and every other weight of that matrix rounds to ~0
        k, r, b = m.get_layer("lstm").get_weights()
        k[0, U + 0] = outlier
        m.get_layer("lstm").set_weights([k, r, b])
    m.save(path)
    return m


def _int8(tmp, name, x_calib, outlier=None):
    h5 = tmp / f"{name}.h5"
    model = _build(str(h5), outlier)
    np.savez(tmp / f"{name}_calib.npz", x_calib=x_calib)
    r = run_isolated("export.tflite:convert", {"model_path": str(h5), "out_path": str(tmp / f"{name}.tflite"),
                                               "mode": "int8", "calib_path": str(tmp / f"{name}_calib.npz")}, 300)
    assert r.ok, r.error
    return h5, tmp / f"{name}.tflite", model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("debug")
    rng = np.random.default_rng(0)
    x_calib = rng.uniform(-1, 1, (60, T, F)).astype(np.float32)
    x_eval = rng.uniform(-1, 1, (80, T, F)).astype(np.float32)
    base = _int8(tmp, "base", x_calib)
    bad = _int8(tmp, "bad", x_calib, outlier=40.0)
    return {"tmp": tmp, "x_calib": x_calib, "x_eval": x_eval, "base": base, "bad": bad}


def test_reference_capture_leaves_outputs_unchanged(models):
    from firmware_sim.mcu import reference
    from firmware_sim.mcu.lower import LstmLayer, lower
    from firmware_sim.mcu import quantize_input
    from firmware_sim.mcu.debug import read_graph
    graph = read_graph(models["base"][1])
    prog = lower(graph)
    L = next(layer for layer in prog.layers if isinstance(layer, LstmLayer))
    for w in quantize_input(graph, models["x_eval"][:3]):
        plain = reference.run(prog, w)
        cap = {}
        outs, vals = reference.run(prog, w, return_all=True, capture=cap)
        assert all(np.array_equal(a, b) for a, b in zip(plain, outs))
        c = cap[L.name]
        assert np.array_equal(c["h"], vals[L.out].reshape(T, U))     # captured h is the output
        for g in "ifgo":
            assert c[g].shape == (T, U) and c[g].dtype == np.int16 and c[f"pre_{g}"].shape == (T, U)
            assert c["scales"][g] == 2.0 ** -15 and c["scales"][f"pre_{g}"] == 2.0 ** -12
        assert c["i"].min() >= 0 and c["f"].min() >= 0 and c["o"].min() >= 0     # sigmoids
        assert c["c"].dtype == np.int16 and c["h"].dtype == np.int8
        assert c["scales"]["h"] == graph.tensors[L.out].sc and c["zero_points"]["h"] == L.h_zp


def test_clipping_report_matches_hand_count(models):
    tmp, x = models["tmp"], models["x_eval"].copy()
    _, int8, _ = models["base"]
    fixed = tmp / "fixed_ranges.tflite"
    # known ranges: input [-1.5, 1.5], output [-0.05, 0.05]
    ranges.rewrite_io_ranges(int8, fixed, input_ranges={0: (-1.5, 1.5)}, output_ranges={0: (-0.05, 0.05)})
    s_in, z_in = ranges.qparams_for_range(-1.5, 1.5)
    lo, hi = ranges.int8_range(s_in, z_in)
    assert lo <= -1.49 and hi >= 1.49
    # 30 values far outside the input range in 7 windows (values in x are within [-1, 1])
    flat = x.reshape(-1)
    hits = np.random.default_rng(1).choice(7 * T * F, 30, replace=False)
    flat[hits[:20]] = -3.0
    flat[hits[20:]] = 2.5
    windows_touched = len(set(int(h) // (T * F) for h in hits))
    y_eval = np.zeros((len(x), 1), np.float32)
    y_eval[:9] = 1.0       # 9 targets above the output range
    y_eval[9:12] = -1.0    # 3 below
    rep = debug(tmp / "base.h5", fixed, x, y_eval=y_eval, tflm=False)
    rows = {(r["tensor"], r["what"]): r for r in rep["clipping"]["rows"]}
    inp = rows[("input[0]", "input values")]
    assert inp["fraction_clipped"] == pytest.approx(30 / x.size)
    assert inp["below"] == pytest.approx(20 / x.size) and inp["above"] == pytest.approx(10 / x.size)
    assert inp["fraction_of_samples_touched"] == pytest.approx(windows_touched / len(x))
    tgt = rows[("output[0]", "targets")]
    assert tgt["fraction_clipped"] == pytest.approx(12 / len(x))
    assert tgt["above"] == pytest.approx(9 / len(x)) and tgt["below"] == pytest.approx(3 / len(x))
    assert "input[0] clips" in rep["text"] and "output[0] clips" in rep["text"]


def test_debugger_finds_the_mis_scaled_forget_gate_weights(models):
    tmp, x = models["tmp"], models["x_eval"]
    bad = debug(tmp / "bad.h5", models["bad"][1], x, tflm=False)
    base = debug(tmp / "base.h5", models["base"][1], x, tflm=False)
    att = sorted(bad["attribution"], key=lambda a: -a["drift_alone"])
    assert att[0]["point"] == "lstm.weights_f", bad["text"]
    rows = {t["point"]: t for t in bad["tensors"]}
    base_t = {t["point"]: t for t in base["tensors"]}
    # input->forget is 16 of the gate's 80 weights: several of them now round to 0
    assert rows["lstm.weights_f"]["zeroed"] > 0.05 > base_t["lstm.weights_f"]["zeroed"]
    assert rows["lstm.weights_f"]["err_rmse"] > 5 * base_t["lstm.weights_f"]["err_rmse"]
    # the error enters at the forget gate: its int8 value is the furthest from float
    gate_err = {g: rows[f"lstm.gate_{g}"]["err_rmse"] for g in "ifgo"}
    assert max(gate_err, key=gate_err.get) == "f"
    base_rows = {a["point"]: a for a in base["attribution"]}
    assert att[0]["drift_alone"] > 5 * base_rows["lstm.weights_f"]["drift_alone"]
    assert "lstm.weights_f" in bad["verdict"][-1]
    assert bad["runtime"]["drift_rmse"] > 1.3 * base["runtime"]["drift_rmse"]


def test_integer_reference_is_exact_and_emulation_agrees_with_runtime(models):
    pytest.importorskip("tflite_micro")
    tmp, x = models["tmp"], models["x_eval"]
    rep = debug(tmp / "base.h5", models["base"][1], x)
    checks = {(c["runtime"], c["tensor"]): c for c in rep["reference_check"]}
    # the reference is TFLite Micro's arithmetic: every hidden and output code equal
    for tensor in ("hidden sequence", "dense output"):
        c = checks[("TFLite Micro", tensor)]
        assert c["fraction_equal"] == 1.0 and c["max_lsb_diff"] == 0 and c["compared"] == len(x)
    ag = rep["agreement"]
    assert ag["tflm"]["hidden"] == 1.0 and ag["tflm"]["output"] == 1.0
    assert ag["tflm"]["hidden_codes"] == len(x) * T * U
    assert "agreement of the integer reference with TFLite Micro: hidden 100.00%" in rep["text"]
    # LiteRT's own int8 LSTM kernel: close, not identical
    assert checks[("LiteRT", "hidden sequence")]["fraction_equal"] > 0.8
    assert checks[("LiteRT", "hidden sequence")]["max_lsb_diff"] <= 8
    assert checks[("LiteRT", "dense output")]["fraction_equal"] > 0.8
    assert abs(rep["runtime"]["tflm_drift_rmse"] - rep["runtime"]["drift_rmse"]) < 0.5 * rep["runtime"]["drift_rmse"]
    assert 0.5 < rep["emulation"]["explained"] < 2.0
    import json
    json.dumps({k: v for k, v in rep.items()})   # JSON-able
