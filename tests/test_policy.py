"""The rules `edge check` and `edge report` share (edge/policy.py, edge/budgets.py) and the report's
block renderers: one best choice named by both, one quantized rule, one budget table, distinct
figure ids, and a renderer for every block kind in each format."""
import json

import pytest

from edge.budgets import KEYS, Budget, Row, evaluate_model, parse_budgets
from edge.check import load_bench, load_manifest, run_check
from edge.config import load_config
from edge.policy import best_per_device, is_quantized, order, quantization
from edge.report import make_reports, render_html, render_md
from edge.report.collect import collect
from edge.report.figures import make_figures
from edge.report.sections import sections
from edge.report.summary import summary_blocks, summary_data
from test_check import LOOSE
from test_report import make_fake

BEST = ('[budgets.default]\nmust_fit = true\n[budgets.tiny.cortex_m4f]\nmax_latency_ms = 8.0\n'
        '[budgets.tiny.cortex_m7]\nmax_latency_ms = 0.775\n')


@pytest.mark.parametrize("budgets, kw, expected", [
    (LOOSE, {}, {"cortex_m4f": "tflite_int8", "cortex_m7": "tflite_int8"}),
    (BEST, {"big_float": True}, {"cortex_m4f": None, "cortex_m7": "tflite_int8"}),
    ("", {"streaming": True}, {"cortex_m4f": "tflite_int8", "cortex_m7": "tflite_int8"}),
])
def test_report_and_check_name_the_same_best_artifact(tmp_path, budgets, kw, expected):
    cfg = load_config(make_fake(tmp_path, budgets=budgets, **kw))
    gate = run_check(cfg, progress=None)
    make_reports(cfg, progress=None)
    report = json.loads((tmp_path / "reports" / "tiny" / "report.json").read_text())
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    named = {d: b["artifact"] for d, b in gate.best["tiny"].items()}
    assert named == expected
    assert {d: b["artifact"] for d, b in report["best"].items()} == named
    assert {d: b["artifact"] for d, b in summary["models"]["tiny"]["best"].items()} == named


def _bench(tmp_path, **kw):
    cfg = load_config(make_fake(tmp_path, **kw))
    bench, _ = load_bench(cfg, "tiny")
    return cfg, bench, load_manifest(cfg, "tiny", bench)[0]


def test_best_is_smallest_that_fits_ties_to_lower_latency_and_runs_on_the_device(tmp_path):
    cfg, bench, manifest = _bench(tmp_path)
    devs = ["cortex_m4f", "cortex_m7"]
    no_budgets = parse_budgets({}, models=["tiny"], devices=devs)
    judged = evaluate_model("tiny", bench, manifest, no_budgets, devs, all_artifacts=True)
    assert best_per_device(bench, devs, judged)["cortex_m4f"]["artifact"] == "tflite_int8"
    # a Linux board runs onnxruntime too: the 8,943 B onnx_dynamic_int8 is the smaller one
    bench["devices"]["cortex_m4f"]["device_class"] = "linux"
    assert best_per_device(bench, devs, judged)["cortex_m4f"]["artifact"] == "onnx_dynamic_int8"
    # same size: the lower device latency wins, whatever the order
    bench["artifacts"]["onnx_dynamic_int8"]["bytes"] = bench["artifacts"]["tflite_int8"]["bytes"]
    assert best_per_device(bench, devs, judged)["cortex_m4f"]["artifact"] == "tflite_int8"   # 8.026 < 8.228 ms
    bench["artifacts"]["onnx_dynamic_int8"]["devices"]["cortex_m4f"]["latency"]["value"] = 1.0
    assert best_per_device(bench, devs, judged)["cortex_m4f"]["artifact"] == "onnx_dynamic_int8"
    # a budget failure disqualifies
    fail = Row("tiny", "onnx_dynamic_int8", None, "max_drift_rmse", 0.01, 0.03, "output units", "fail")
    assert best_per_device(bench, devs, judged + [fail])["cortex_m4f"]["artifact"] == "tflite_int8"
    assert best_per_device(bench, devs, judged + [fail])["cortex_m7"]["artifact"] == "tflite_int8"


def test_one_quantized_rule():
    assert is_quantized({"quantized": True}) is True
    assert is_quantized({"quantized": True}, {"quantized": False}) is False      # the manifest wins
    assert is_quantized({"quantized": False}, {"quantized": True}) is True
    note = ["NOT QUANTIZED: the weights stayed float"]
    assert is_quantized({"quantized": True, "notes": note}) is False               # a note vetoes
    assert quantization({"mode": "dynamic", "notes": note})[1].startswith("NO: float file")
    assert quantization({"mode": "qdq_int8"}) == (False, "no (qdq_int8 requested; not quantized per the manifest)")
    assert quantization({"mode": "float32"}) == (False, "no")


def test_order_float_before_quantized_streaming_last():
    arts = {"s": {"format": "tflite", "mode": "int8", "streaming": True}, "o8": {"format": "onnx", "mode": "dynamic_int8"},
            "t8": {"format": "tflite", "mode": "int8"}, "o": {"format": "onnx", "mode": "float32"},
            "t": {"format": "tflite", "mode": "float32"}}
    assert order(arts) == ["t", "t8", "o", "o8", "s"]     # formats in the order first seen ("s" is tflite)


def test_budget_summary_uses_the_config_key_names():
    b = Budget(accuracy_drop=1.0, drift={"rmse": 0.5}, latency_ms=2.0, must_fit=True, artifacts=["all"])
    assert b.as_dict() == {"max_accuracy_drop": 1.0, "max_rmse_increase": None, "max_drift": {"rmse": 0.5},
                           "max_latency_ms": 2.0, "max_ram_kib": None, "max_flash_kib": None, "must_fit": True,
                           "artifacts": ["all"]}
    assert list(b.as_dict()) == list(KEYS)


def test_evaluate_units_and_task_filter(tmp_path):
    cfg, bench, manifest = _bench(tmp_path)
    raw = {"default": {"max_accuracy_drop": 1.0, "max_rmse_increase": 0.2, "max_drift_rmse": 0.5,
                       "max_drift_argmax_disagreement": 0.1, "cortex_m7": {"max_latency_ms": 2.0, "must_fit": True}}}
    b = parse_budgets(raw, models=["tiny"], devices=["cortex_m7"])
    rows = [r for r in evaluate_model("tiny", bench, manifest, b, ["cortex_m7"]) if r.artifact == "tflite_int8"]
    # regression: no accuracy or argmax budget; model-level first, then the device
    assert [(r.budget, r.unit, r.device) for r in rows] == [
        ("max_rmse_increase", "relative", None), ("max_drift_rmse", "output units", None),
        ("max_latency_ms", "ms", "cortex_m7"), ("must_fit", "", "cortex_m7")]
    assert rows[2].measured == pytest.approx(0.773) and rows[2].detail == "estimated"
    bench["task"] = "classification"             # accuracy and argmax budgets instead of the RMSE one
    rows = [r for r in evaluate_model("tiny", bench, manifest, b, []) if r.artifact == "tflite_int8"]
    assert [(r.budget, r.unit) for r in rows] == [
        ("max_accuracy_drop", "points"), ("max_drift_argmax_disagreement", "fraction"),
        ("max_drift_rmse", "output units")]
    assert rows[0].status == "skip" and rows[0].detail == "no ground truth labels"


def test_the_two_stream_drift_figures_get_distinct_ids(tmp_path):
    cfg = load_config(make_fake(tmp_path))
    data = collect(cfg, "tiny")
    n = 6
    result = {"steps": 600, "window": 100, "int16_cell_range": [8.0],
              "per_window": {"start": [100 * i for i in range(n)], "litert_rmse": [0.1] * n,
                             "tflm_rmse": [0.11] * n, "float_max_abs_c": [2.0] * n, "int8_max_abs_c": [1.9] * n}}
    data["streaming"] = {"per_step": {}, "long_stream": {"result": result, "signal": {"name": "sig"}}}
    data["extras"]["streaming"] = {"source": "manifest.json:stream_check", "data": {"drift": {"runs": {"sig": result}}}}
    ids = [f["id"] for f in make_figures(data)]
    assert len(ids) == len(set(ids))
    assert {"stream_drift", "cell_state", "stream_check_drift"} <= set(ids)


def test_every_block_kind_has_a_renderer_in_each_format(tmp_path):
    cfg = load_config(make_fake(tmp_path, streaming=True, emulated=True, per_step=True, quant_search=True,
                                budgets=LOOSE))
    data = collect(cfg, "tiny")
    figures = make_figures(data)
    blocks = sections(data, figures) + summary_blocks(summary_data([data], cfg))
    kinds = {k for k, _ in blocks}
    assert kinds == {"h2", "p", "table", "details", "fig"}
    assert set(render_md.RENDERERS) == set(render_html.RENDERERS) >= kinds | {"warn"}
    md, page = render_md.report(data, blocks), render_html.report(data, blocks)
    for kind, payload in blocks:                 # each block shows up in both formats
        if kind == "h2":
            assert f"### {payload}" in md and f"<h2>{payload}</h2>" in page
        elif kind == "fig":
            assert f"figures/{payload['id']}.png" in md and f'id="fig-{payload["id"]}"' in page
    with pytest.raises(KeyError):
        render_md.report(data, [("chart", None)])
