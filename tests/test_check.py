"""`edge check`, the CI gate: budgets from the config against the fake bench results of
test_report.py; exit 1 when a budget is exceeded, 0 when met, 2 on bad budgets or no bench."""
import xml.etree.ElementTree as ET

import pytest

from edge.budgets import DRIFT_METRICS, budgets_from_config, parse_budgets
from edge.config import load_config
from groundfloor.errors import BadInput
from test_report import make_fake, run_edge

# tflite_int8 / onnx_dynamic_int8 (the quantized artifacts) measured in the fake bench:
#   task rmse +9.9 % / -0.3 %, drift rmse 0.196 / 0.0332, M4F latency 8.026 / 8.228 ms, M7 0.773 / 0.798 ms
LOOSE = """
[budgets.default]
must_fit = true
max_rmse_increase = 0.15
max_drift = {metric = "rmse", value = 0.5}
max_latency_ms = 20
[budgets.default.cortex_m4f]
artifacts = ["tflite_int8"]      # microcontrollers run TFLite Micro: no ONNX file runs there
[budgets.default.cortex_m7]
artifacts = ["tflite_int8"]
"""


def junit(path):
    root = ET.parse(path).getroot()
    cases = root.findall(".//testcase")
    return root, cases, [c for c in cases if c.find("failure") is not None]


def test_passes_when_budgets_are_met(tmp_path, capsys):
    cfg = make_fake(tmp_path, budgets=LOOSE)
    assert run_edge(["--config", cfg, "check"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "PASS" in out
    root, cases, failed = junit(tmp_path / "reports" / "check.xml")
    # 2 quantized artifacts x (rmse increase + drift rmse) + tflite_int8 x 2 devices x (latency + fit)
    assert len(cases) == 2 * 2 + 2 * 2 and not failed
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert ("tiny.tflite_int8", "max_latency_ms @ cortex_m4f") in names
    assert ("tiny.onnx_dynamic_int8", "max_drift_rmse") in names
    assert root.get("tests") == str(len(cases)) and root.get("failures") == "0"


def test_fails_when_tightened_below_measured(tmp_path, capsys):
    budgets = LOOSE + "[budgets.tiny]\nmax_rmse_increase = 0.05\n[budgets.tiny.cortex_m4f]\nmax_latency_ms = 8.02\n"
    cfg = make_fake(tmp_path, budgets=budgets)
    out_xml = tmp_path / "ci" / "gate.xml"
    assert run_edge(["--config", cfg, "check", "--junit", out_xml]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 2
    root, cases, failed = junit(out_xml)
    assert len(cases) == 8
    assert sorted((c.get("classname"), c.get("name")) for c in failed) == [
        ("tiny.tflite_int8", "max_latency_ms @ cortex_m4f"), ("tiny.tflite_int8", "max_rmse_increase")]
    msg = [c.find("failure").get("message") for c in failed]
    assert any("8.026" in m and "8.02 ms" in m for m in msg)
    # loosened again: passes
    cfg.write_text(cfg.read_text().replace("max_rmse_increase = 0.05", "max_rmse_increase = 0.2")
                   .replace("max_latency_ms = 8.02", "max_latency_ms = 9"))
    assert run_edge(["--config", cfg, "check", "--junit", out_xml]) == 0
    assert not junit(out_xml)[2]


def test_artifact_selection_devices_and_switch_off(tmp_path):
    budgets = LOOSE + ('[budgets.tiny]\nartifacts = ["tflite_*"]\nmax_drift_max_abs = 0.5\n'
                       '[budgets.tiny.cortex_m7]\nmax_latency_ms = false\nmust_fit = false\n')
    cfg = make_fake(tmp_path, budgets=budgets)
    assert run_edge(["--config", cfg, "check", "--devices", "cortex_m7"]) == 1   # drift max_abs 0.98 > 0.5
    root, cases, failed = junit(tmp_path / "reports" / "check.xml")
    classes = {c.get("classname") for c in cases}
    assert classes == {"tiny.tflite_float32", "tiny.tflite_dynamic", "tiny.tflite_int8"}
    assert not any("@" in c.get("name") for c in cases)          # M7 budgets switched off
    assert [c.get("classname") for c in failed] == ["tiny.tflite_int8"]
    assert run_edge(["--config", cfg, "check", "--devices", "cortex_a53"]) == 2   # not benched


@pytest.mark.parametrize("budgets, key", [
    ("[budgets.default]\nmax_latency_us = 5\n", "max_latency_us"),                 # wrong unit suffix
    ("[budgets.default]\nmax_latency_ms = \"5 ms\"\n", "max_latency_ms"),           # wrong type
    ("[budgets.default]\nmust_fit = 1\n", "must_fit"),
    ("[budgets.default]\nmax_accuracy_drop_pct = 1.0\n", "max_accuracy_drop_pct"),
    ("[budgets.default]\nmax_drift_rmse_pct = 1.0\n", "max_drift_rmse_pct"),
    ("[budgets.default]\nmax_drift = {metric = \"nse\", value = 0.1}\n", "max_drift.metric"),
    ("[budgets.default]\nmax_drift = {metric = \"rmse\", limit = 0.1}\n", "max_drift.limit"),
    ("[budgets.default]\nmax_ram = 5\n", "max_ram"),
    ("[budgets.tiny]\nmax_latency_ms = -1\n", "max_latency_ms"),
    ("[budgets.tiny.cortex_m9]\nmax_latency_ms = 1\n", "cortex_m9"),               # no such device
    ("[budgets.tiny.cortex_m4f]\nmax_rmse_increase = 0.1\n", "max_rmse_increase"),  # not per device
    ("[budgets.tinny]\nmust_fit = true\n", "budgets.tinny"),                        # no such model
    ("[budgets.default]\nartifacts = []\n", "artifacts"),
])
def test_bad_budgets_exit_2(tmp_path, capsys, budgets, key):
    cfg = make_fake(tmp_path, budgets=budgets)
    assert run_edge(["--config", cfg, "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err


def test_no_bench_results_exit_2(tmp_path, capsys):
    cfg = make_fake(tmp_path, budgets=LOOSE, with_bench=False)
    assert run_edge(["--config", cfg, "check"]) == 2
    assert "no bench results" in capsys.readouterr().err
    assert not (tmp_path / "reports" / "check.xml").exists()


def test_a_device_budget_on_a_file_the_device_cannot_run_fails(tmp_path, capsys):
    """No TFLite Micro (nor emulated) run of an ONNX file: a microcontroller cannot run it, so its
    latency and fit there fail, saying why, however good the estimate looks."""
    budgets = LOOSE + '[budgets.tiny.cortex_m7]\nartifacts = ["onnx_dynamic_int8"]\n'
    cfg = make_fake(tmp_path, budgets=budgets)
    assert run_edge(["--config", cfg, "check"]) == 1
    failed = junit(tmp_path / "reports" / "check.xml")[2]
    assert sorted(c.get("name") for c in failed) == ["max_latency_ms @ cortex_m7", "must_fit @ cortex_m7"]
    assert all("cortex_m7 runs tflm, emulated; none ran it" in c.find("failure").get("message") for c in failed)


def test_float_file_is_not_gated_as_quantized(tmp_path):
    # tflite_dynamic asked for quantization but stayed float (manifest note): not in the default selection
    cfg = make_fake(tmp_path, budgets=LOOSE)
    assert run_edge(["--config", cfg, "check"]) == 0
    classes = {c.get("classname") for c in junit(tmp_path / "reports" / "check.xml")[1]}
    assert classes == {"tiny.tflite_int8", "tiny.onnx_dynamic_int8"}


def test_shipped_budgets_are_valid():
    cfg = load_config()
    b = budgets_from_config(cfg)
    for m in cfg.models:
        mb = b.for_model(m)
        assert mb.drift and set(mb.drift) <= set(DRIFT_METRICS)
        for d in cfg.devices:
            db = b.for_device(m, d)
            assert db.must_fit and db.latency_ms is not None


def test_parse_merges_levels():
    raw = {"default": {"max_latency_ms": 10, "max_drift_rmse": 0.5, "cortex_m4f": {"max_latency_ms": 40}},
           "m": {"max_drift": {"metric": "max_abs", "value": 2}, "cortex_m4f": {"max_latency_ms": 30}}}
    b = parse_budgets(raw, "x.toml", models=["m", "n"], devices=["cortex_m4f", "cortex_m7"])
    assert b.for_device("m", "cortex_m4f").latency_ms == 30
    assert b.for_device("n", "cortex_m4f").latency_ms == 40
    assert b.for_device("m", "cortex_m7").latency_ms == 10
    assert b.for_model("m").drift == {"rmse": 0.5, "max_abs": 2.0}
    assert b.for_device("m", "cortex_m4f").origin["max_latency_ms"] == "budgets.m.cortex_m4f"
    with pytest.raises(BadInput, match="max_drift_cos"):
        parse_budgets({"default": {"max_drift_cos": 1}}, "x.toml")
