"""Accuracy-budgeted quantization search on a tiny LSTM whose evaluation data leaves the
calibration range (the Seattle failure in miniature): the choice is made on validation windows
split off the training side, the evaluation figures are reported beside them; plus budget
validation, the split and the flatbuffer range rewrite."""
import json

import numpy as np
import pytest

from groundfloor.errors import BadInput
from export import ranges
from export.quantize_search import default_candidates, format_table, search
from export.search_judge import Judge, check_budget, split_training_side, within_budget
from tiny_keras import tiny_lstm_saved


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp, model = tiny_lstm_saved(tmp_path_factory, "search", steps=10, features=1, units=6)
    window = model.input_shape[1:]
    rng = np.random.default_rng(0)
    x_calib = rng.uniform(0.0, 1.0, (40, *window)).astype(np.float32)
    # evaluation data is colder than anything in training: int8 inputs clip at 0
    x_eval = rng.uniform(-1.5, 0.5, (60, *window)).astype(np.float32)
    y_float = model.predict(x_eval, batch_size=1, verbose=0)
    y_eval = y_float + rng.normal(0, 0.01, y_float.shape).astype(np.float32)
    y_train = model.predict(x_calib, batch_size=1, verbose=0)
    y_calib = y_train + rng.normal(0, 0.01, y_train.shape).astype(np.float32)
    return {"tmp": tmp, "h5": tmp / "tiny.h5", "x_calib": x_calib, "x_eval": x_eval,
            "y_float": y_float, "y_eval": y_eval, "y_calib": y_calib}


def _int8_default():
    c = default_candidates()[0]
    c["calib"]["n"] = 40
    return c


def test_accuracy_budget_on_a_regressor_is_refused(tmp_path):
    with pytest.raises(BadInput) as e:
        search(tmp_path / "missing.h5", np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), np.zeros((2, 1)),
               task="regression", budget={"max_accuracy_drop": 0.005}, out_dir=tmp_path)
    msg = str(e.value)
    assert "max_accuracy_drop" in msg and "max_rmse_increase" in msg and "\n" not in msg
    assert e.value.exit_code == 2
    with pytest.raises(BadInput):
        check_budget("classification", {"max_rmse_increase": 0.02})
    with pytest.raises(BadInput):
        check_budget("regression", {"max_rmse_increase": -0.1})
    with pytest.raises(BadInput):
        check_budget("regression", {"max_latency": 3})
    assert check_budget("classification", {"max_accuracy_drop": 0.5}) == ("max_accuracy_drop", 0.005)  # points in


def test_budget_arithmetic():
    assert within_budget("regression", "max_rmse_increase", 0.02, 0.5, 0.509) == (True, pytest.approx(0.018))
    assert not within_budget("regression", "max_rmse_increase", 0.02, 0.5, 0.511)[0]
    assert within_budget("classification", "max_accuracy_drop", 0.005, 0.965, 0.962)[0]
    assert not within_budget("classification", "max_accuracy_drop", 0.005, 0.965, 0.955)[0]


def test_impossible_budget_falls_back_to_float(tiny):
    """No y_calib: the validation figure is the drift bound, and a zero budget leaves float32."""
    out = tiny["tmp"] / "fallback"
    lines = []
    r = search(tiny["h5"], tiny["x_calib"], tiny["x_eval"], tiny["y_eval"], "regression",
               {"max_rmse_increase": 0.0}, out, progress=lines.append,
               candidates=[_int8_default(), default_candidates()[-1]], y_float=tiny["y_float"])
    assert r.met and r.chosen["name"] == "float32"
    int8, flt = r.candidates
    assert int8["status"] == "ok" and int8["meets_budget"] is False and int8["change"] > 0.05
    assert int8["quantized"] and not flt["quantized"]
    assert int8["bytes"] > 0 and flt["bytes"] > 0 and int8["drift"]["rmse"] > 0
    assert "first (cheapest) candidate within budget" in r.reason
    saved = json.loads((out / "search.json").read_text())
    assert saved["chosen"]["name"] == "float32" and len(saved["candidates"]) == 2
    assert saved["split"]["validation"]["ground_truth"].startswith("none (no y_calib)")
    v = int8["validation"]
    assert v["metric"]["name"] == "drift_rmse" and v["meets_budget"] is False
    # the bound: drift RMSE on validation / the float model's evaluation RMSE
    assert v["change"] == pytest.approx(v["drift"]["rmse"] / r.float_metric["value"], rel=1e-9)
    assert any("int8_default" in line for line in lines)

    # the range fix is a flatbuffer rewrite: the same file with wider input/output ranges
    # covering the evaluation data recovers most of the accuracy
    from export.quantize_search import evaluate_artifact
    np.savez(out / "d.npz", x_eval=tiny["x_eval"])
    src = out / "int8_default.tflite"
    ranges.rewrite_io_ranges(src, out / "wide.tflite", input_ranges={0: (-1.6, 1.1)},
                             output_ranges={0: ranges.range_minmax(tiny["y_float"], 0.3)})
    evaluate_artifact(str(out / "wide.tflite"), str(out / "d.npz"), str(out / "wide.npz"))
    y = np.load(out / "wide.npz")["y"]
    wide = float(np.sqrt(np.mean((y - tiny["y_float"]) ** 2)))
    assert wide < 0.5 * int8["drift"]["rmse"]


def test_impossible_budget_without_float_reports_the_best(tiny):
    r = search(tiny["h5"], tiny["x_calib"], tiny["x_eval"], tiny["y_eval"], "regression",
               {"max_rmse_increase": 0.0}, tiny["tmp"] / "nofloat", candidates=[_int8_default()],
               y_float=tiny["y_float"])
    assert r.met is False
    assert r.chosen["name"] == "int8_default" and r.chosen["meets_budget"] is False
    assert r.reason.startswith("no candidate within")


def test_physical_range_windows_reach_the_declared_range():
    x = np.random.default_rng(0).uniform(10, 20, (50, 8, 2)).astype(np.float32)
    syn = ranges.physical_range_windows(x, margin=0.1, per_side=3)
    lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
    for f in range(2):
        assert syn[..., f].min() == pytest.approx(lo[f] - 0.1 * (hi[f] - lo[f]), abs=1e-4)
        assert syn[..., f].max() == pytest.approx(hi[f] + 0.1 * (hi[f] - lo[f]), abs=1e-4)
    cal = ranges.calibration_set(x, n=20, strategy="stratified", extremes=True, physical_margin=0.1, per_side=3)
    assert len(cal) >= 20 + len(syn)


def test_candidate_kinds_are_a_registry():
    from export.quantize_search import CANDIDATE_KINDS, convert_candidate
    specs = default_candidates()
    assert {c["kind"] for c in specs} == set(CANDIDATE_KINDS)  # every default kind is registered
    assert [c["kind"] for c in default_candidates(include_mixed=False, include_onnx=False,
                                                  include_float=False)] == \
        [c["kind"] for c in specs if c["kind"] in ("tflite_int8", "tflite_16x8")]
    assert CANDIDATE_KINDS["onnx_dynamic"].ext == ".onnx" and not CANDIDATE_KINDS["onnx_dynamic"].calibrated
    assert all(k.ext == ".tflite" for n, k in CANDIDATE_KINDS.items() if n != "onnx_dynamic")
    with pytest.raises(ValueError, match="unknown candidate kind 'tflite_int4'"):
        convert_candidate("m.h5", "o.tflite", "d.npz", {"name": "x", "kind": "tflite_int4"})


def test_metrics_are_the_reference_metrics():
    from export.search_judge import drift, task_metric
    from groundfloor.metrics import error_metrics
    rng = np.random.default_rng(3)
    y_float = rng.standard_normal((50, 1))
    out = y_float + rng.normal(0, 0.1, (50, 1))
    d = drift("regression", out, y_float)
    ref = error_metrics(y_float, out)
    assert d == {"rmse": ref["rmse"], "max_abs": ref["max_abs"]} and d["rmse"] > 0
    assert task_metric("regression", out, y_float)["value"] == pytest.approx(d["rmse"], rel=1e-12)
    # classifiers: accuracy against labels, argmax agreement against the float model
    p_float = rng.dirichlet(np.ones(3), 40)
    p = p_float.copy()
    p[:10] = p[:10, ::-1]  # the first 10 rows swap their first and last class
    labels = p_float.argmax(1)
    changed = float(np.mean(p.argmax(1) != labels))
    assert task_metric("classification", p, labels) == {"name": "accuracy", "value": 1.0 - changed}
    assert drift("classification", p, p_float)["agreement"] == 1.0 - changed
    sig = np.array([[0.2], [0.5], [0.51], [0.9]])
    assert task_metric("classification", sig, np.array([0, 0, 1, 1]))["value"] == 1.0  # 0.5 is class 0


def test_split_is_seeded_disjoint_and_the_only_calibration_pool():
    a, b = split_training_side(50, 0.2, seed=3), split_training_side(50, 0.2, seed=3)
    assert np.array_equal(a.validation, b.validation) and np.array_equal(a.calibration, b.calibration)
    assert len(a.validation) == 10 and len(a.calibration) == 40
    assert not set(a.validation) & set(a.calibration) and set(a.validation) | set(a.calibration) == set(range(50))
    assert not np.array_equal(split_training_side(50, 0.2, seed=4).validation, a.validation)
    assert len(split_training_side(2, 0.01).validation) == 1 == len(split_training_side(2, 0.99).calibration)
    with pytest.raises(BadInput, match="at least 2"):
        split_training_side(1)
    with pytest.raises(BadInput, match="between 0 and 1"):
        split_training_side(10, 1.0)


def test_judge_without_ground_truth_bounds_the_change():
    rng = np.random.default_rng(1)
    p_float = rng.dirichlet(np.ones(3), 20)
    p = p_float.copy()
    p[:4] = p[:4, ::-1]  # 4 of 20 windows change their answer
    changed = float(np.mean(p.argmax(1) != p_float.argmax(1)))
    fig = Judge("classification", "max_accuracy_drop", 0.005, p_float).figure(p)
    assert fig["metric"] == {"name": "agreement", "value": 1.0 - changed} and fig["change"] == pytest.approx(changed)
    assert fig["meets_budget"] is False and fig["n"] == 20
    assert Judge("classification", "max_accuracy_drop", 0.005, p_float).figure(p_float)["meets_budget"] is True


def test_the_choice_is_made_on_validation_and_reported_on_evaluation(tiny):
    """Training-side validation windows lie in the calibrated range, the evaluation windows do
    not: int8_default is within budget on validation (the choice) and far over it on evaluation
    (where the choice would have kept float32)."""
    from edge.report import extras, render_md
    out = tiny["tmp"] / "split"
    specs = [_int8_default(), default_candidates()[-1]]
    r = search(tiny["h5"], tiny["x_calib"], tiny["x_eval"], tiny["y_eval"], "regression",
               {"max_rmse_increase": 0.5}, out, candidates=specs, y_float=tiny["y_float"],
               y_calib=tiny["y_calib"], exhaustive=True)
    int8, flt = r.candidates
    for c in r.candidates:   # the legacy keys: the evaluation figure, and the choice's verdict
        assert c["metric"] == c["evaluation"]["metric"] and c["change"] == c["evaluation"]["change"]
        assert c["meets_budget"] == c["validation"]["meets_budget"]
        assert c["validation"]["n"] == 8 and c["evaluation"]["n"] == 60
    assert int8["validation"]["meets_budget"] and not int8["evaluation"]["meets_budget"]
    assert flt["evaluation"]["meets_budget"]
    # the choice: the cheapest candidate within budget ON VALIDATION, not what evaluation would pick
    first_on = {w: next(c["name"] for c in r.candidates if c[w]["meets_budget"]) for w in ("validation", "evaluation")}
    assert first_on == {"validation": "int8_default", "evaluation": "float32"}
    assert r.met and r.chosen["name"] == "int8_default" and r.met_on_evaluation is False
    assert "on the validation windows" in r.reason and "over budget" in r.reason

    # search.json: the split, and no validation window among the calibration pool
    saved = json.loads((out / "search.json").read_text())
    sp = saved["split"]
    assert sp["choice_on"] == "validation" and sp["seed"] == 0 and sp["fraction"] == 0.2
    assert sp["validation"]["n"] == 8 and sp["calibration_pool"]["n"] == 32 and sp["evaluation"]["n"] == 60
    assert sp["validation"]["ground_truth"] == "y_calib" and sp["validation"]["float_metric"]["name"] == "rmse"
    assert sp["evaluation"]["float_metric"] == saved["float_metric"]
    val = np.array(sp["validation_indices"])
    data = np.load(out / "search_data.npz")
    assert np.array_equal(data["x_val"], tiny["x_calib"][val])
    pool = np.delete(tiny["x_calib"], val, axis=0)
    assert np.array_equal(data["x_calib"], pool) and np.array_equal(data["y_calib"], np.delete(tiny["y_calib"], val, 0))
    # what candidates calibrate on (export.ranges.calibration_set over the pool) holds no validation window
    drawn = ranges.calibration_set(data["x_calib"], n=40, physical_margin=0.1, per_side=10, extremes=True)
    assert not any(np.array_equal(w, v) for w in drawn for v in data["x_val"])
    assert int8["options"]["calibration_windows"] == 32
    assert {"validation", "evaluation"} <= set(saved["candidates"][0]) and saved["met_on_evaluation"] is False

    # the table `edge quantize` prints and the report: both columns, and which one the choice used
    table = format_table(r)
    assert "chosen on 8 validation windows" in table and "val change" in table and "eval change" in table
    md = "\n".join(render_md._body(extras._search_blocks(
        {"extras": {"quant_search": {"source": "search.json", "data": saved}}}), {}))
    assert "validation: change vs float" in md and "evaluation: change vs float" in md
    assert "The choice used the validation columns only: 8 windows" in md and "OVER budget" in md
    row = next(line for line in md.splitlines() if "int8_default" in line and line.startswith("|"))
    assert f"{100 * int8['validation']['change']:+.2f} %" in row and f"{100 * int8['change']:+.2f} %" in row
