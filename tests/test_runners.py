"""Runners in isolated children: outputs, int8 (de)quantization, state reset, TFLM arena search,
crash isolation, the optional tflite_runtime backend, and the static graph analysis."""
import numpy as np
import pytest

from groundfloor.isolate import run_isolated
from groundfloor.tflm import parse_allocations
from firmware_sim import latency
from firmware_sim.profiles import load_profile
from firmware_sim.runners import (RUNNERS, RunConfig, Runner, arena_search, get_runner, post_output,
                                  prep_input)
from fixtures_models import F, T, UNITS, tiny_models, x_eval_npz  # noqa: F401

FAST = RunConfig(warmup=1, runs=20, timeout_s=60)


def _run(runner, model, x_npz, tmp_path, config=FAST, extra=None, tag="out"):
    out = tmp_path / f"{tag}.npz"
    rec = runner.run(model, x_npz, out, config, extra)
    assert rec["status"] == "ok", rec
    with np.load(out) as d:
        return rec, {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def data(tiny_models):
    with np.load(tiny_models / "data.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def arena(tiny_models, x_eval_npz, tmp_path_factory):
    return arena_search(tiny_models / "int8.tflite", x_eval_npz, "fixture-int8",
                        cache_dir=tmp_path_factory.mktemp("arena_cache"))


def test_registry_has_the_runners_and_an_emulated_runner_can_be_added():
    assert {"litert", "onnxruntime", "tflm", "tflite_runtime"} <= set(RUNNERS)
    from firmware_sim.runners import register_runner

    class Fake(Runner):
        name, kind, formats, target = "fake_emulated", "emulated", ("tflite",), "x:y"
    try:
        register_runner(Fake)
        assert get_runner("fake_emulated").kind == "emulated"
    finally:
        RUNNERS.pop("fake_emulated", None)


def test_the_child_quantizes_inputs_and_dequantizes_outputs():
    x = np.array([-1.0, 0.0, 0.5, 10.0], np.float32)
    q = prep_input(x, np.int8, 0.01, 3)
    assert q.dtype == np.int8 and list(q) == [-97, 3, 53, 127]   # 10.0 saturates
    y = post_output(q, 0.01, 3)
    assert y.dtype == np.float32 and y[:3] == pytest.approx([-1.0, 0.0, 0.5])
    assert prep_input(x, np.float32, 0.0, 0).dtype == np.float32 and post_output(x, 0.0, 0).dtype == np.float32
    with pytest.raises(ValueError, match="without quantization parameters"):
        prep_input(x, np.int8, 0.0, 0)


def test_litert_and_onnxruntime_float_match_keras(tiny_models, x_eval_npz, data, tmp_path):
    rec, out = _run(get_runner("litert"), tiny_models / "float32.tflite", x_eval_npz, tmp_path, tag="l")
    assert np.abs(out["out_0"] - data["y_float"]).max() < 1e-5
    assert rec["latency_host"]["kind"] == "measured" and rec["latency_host"]["n"] >= FAST.runs
    assert rec["peak_rss_bytes"]["value"] > 0
    rec, out = _run(get_runner("onnxruntime"), tiny_models / "float32.onnx", x_eval_npz, tmp_path, tag="o")
    assert np.abs(out["out_0"] - data["y_float"]).max() < 1e-5
    assert rec["details"]["threads"] == {"intra_op": 1, "inter_op": 1}


def test_int8_litert_and_tflm_quantize_inputs_and_dequantize_outputs(tiny_models, x_eval_npz, data, arena, tmp_path):
    rec, lit = _run(get_runner("litert"), tiny_models / "int8.tflite", x_eval_npz, tmp_path, tag="l")
    assert rec["details"]["inputs"][0]["dtype"] == "int8" and rec["details"]["inputs"][0]["scale"] > 0
    assert lit["out_0"].dtype == np.float32
    # int8 drift is real but the outputs must track the float model (a wrong scale, zero point
    # or sign in the quantize/dequantize plumbing gives errors of the order of the spread)
    err = lit["out_0"] - data["y_float"]
    assert np.sqrt(np.mean(err ** 2)) < 0.5 * data["y_float"].std()
    rec, micro = _run(get_runner("tflm"), tiny_models / "int8.tflite", x_eval_npz, tmp_path,
                      extra={"arena": arena}, tag="m")
    scale = rec["details"]["outputs_spec"][0]["scale"]
    assert np.abs(micro["out_0"] - lit["out_0"]).max() <= 5 * scale + 1e-9   # a few LSB apart at most


def test_state_reset_matters(tiny_models, x_eval_npz, data, arena, tmp_path):
    """Without a reset before each sequence the fused LSTM carries h and c over: outputs change."""
    for name, model, extra in [("litert", "float32.tflite", None), ("tflm", "int8.tflite", {"arena": arena})]:
        runner = get_runner(name)
        _, with_reset = _run(runner, tiny_models / model, x_eval_npz, tmp_path, extra=extra, tag=f"{name}_r")
        no_reset = RunConfig(warmup=1, runs=20, timeout_s=60, reset_state=False)
        _, without = _run(runner, tiny_models / model, x_eval_npz, tmp_path, config=no_reset, extra=extra,
                          tag=f"{name}_n")
        err_with = np.abs(with_reset["out_0"] - data["y_float"]).mean()
        err_without = np.abs(without["out_0"] - data["y_float"]).mean()
        assert err_without > 3 * err_with, (name, err_with, err_without)
        assert np.abs(with_reset["out_0"] - without["out_0"]).max() > 0.1, name


def test_streaming_model_is_stepped_and_equals_the_whole_sequence(tiny_models, x_eval_npz, data, tmp_path):
    rec, out = _run(get_runner("litert"), tiny_models / "stream_float32.tflite", x_eval_npz, tmp_path)
    assert rec["details"]["plan"] == "stepped"
    # one push = one invoke with the state carried: latency per step; the whole window beside it
    assert rec["latency_host"]["per"] == "step" and rec["latency_host_window"]["per"] == "sequence"
    assert rec["latency_host"]["n"] == T * rec["latency_host_window"]["n"]
    assert rec["latency_host"]["p50"] < rec["latency_host_window"]["p50"]
    assert out["steps_0"].shape == (data["x_eval"].shape[0], T, 1)
    assert np.abs(out["out_0"] - data["y_float"]).max() < 1e-5


def test_arena_search_finds_the_exact_minimum(tiny_models, x_eval_npz, arena, tmp_path):
    assert arena["status"] == "ok" and arena["kind"] == "measured"
    n = arena["min_arena_bytes"]
    assert arena["largest_failing_bytes"] == n - 1
    assert 0 < arena["reported"]["total_bytes"] <= n   # print_allocations() from fd 2, next to the search
    cfg = RunConfig(warmup=0, runs=1, timeout_s=60).as_dict()
    results = {}
    for size in (n, n - 1):
        cfg["arena_bytes"] = size
        results[size] = run_isolated("firmware_sim.runners.tflm:child_tflm",
                                     {"model_path": str(tiny_models / "int8.tflite"), "x_path": str(x_eval_npz),
                                      "out_path": str(tmp_path / f"a{size}.npz"), "cfg": dict(cfg)}, timeout=60)
    assert results[n].status == "ok"
    assert results[n - 1].status in ("crashed", "error")   # too small: TFLM segfaults or refuses


def test_arena_search_is_cached_per_sha256(tiny_models, x_eval_npz, tmp_path):
    first = arena_search(tiny_models / "int8.tflite", x_eval_npz, "abc123", cache_dir=tmp_path)
    again = arena_search(tiny_models / "int8.tflite", x_eval_npz, "abc123", cache_dir=tmp_path)
    assert first["cached"] is False and again["cached"] is True
    assert again["min_arena_bytes"] == first["min_arena_bytes"]


def test_parse_allocations():
    text = ("[RecordingMicroAllocator] Arena allocation total 2664 bytes\n"
            "[RecordingMicroAllocator] Arena allocation head 112 bytes\n"
            "[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 648 bytes with alignment overhead "
            "(requested 640 bytes for 27 allocations)\n")
    p = parse_allocations(text)
    assert p["total_bytes"] == 2664 and p["head_bytes"] == 112
    assert p["categories"]["TfLiteEvalTensor data"] == {"used": 648, "requested": 640}


def test_truncated_or_missing_model_is_a_recorded_failure(tiny_models, x_eval_npz, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes((tiny_models / "int8.tflite").read_bytes()[:1000])
    rec = get_runner("litert").run(bad, x_eval_npz, tmp_path / "o.npz", FAST)
    assert rec["status"] in ("error", "crashed") and rec["error"]
    rec = get_runner("onnxruntime").run(tmp_path / "missing.onnx", x_eval_npz, tmp_path / "o.npz", FAST)
    assert rec["status"] == "error"


def test_tflite_runtime_is_optional():
    ok, why = get_runner("tflite_runtime").available()
    try:
        import tflite_runtime  # noqa: F401
        assert ok
    except ImportError:
        assert not ok and "not installed" in why


def test_applicability():
    assert get_runner("tflm").applicable({"format": "tflite", "mode": "int8", "quantized": True})[0]
    assert get_runner("tflm").applicable({"format": "tflite", "mode": "float32", "quantized": False})[0]  # MCUs with an FPU
    assert not get_runner("litert").applicable({"format": "onnx"})[0]
    assert get_runner("onnxruntime").applicable({"format": "onnx"})[0]


def test_graph_analysis_counts_macs_and_state(tiny_models):
    lstm_macs = T * 4 * UNITS * (F + UNITS)   # steps x 4 gates x units x (inputs + recurrent)
    dense_macs = UNITS
    expected_state = {"float32.tflite": 2 * UNITS * 4, "int8.tflite": UNITS * 1 + UNITS * 2,  # h int8, c int16
                      "float32.onnx": 2 * UNITS * 4}
    for f, fmt in [("float32.tflite", "tflite"), ("int8.tflite", "tflite"), ("float32.onnx", "onnx")]:
        a = latency.analyze_model(tiny_models / f, fmt)
        s = latency.summarize(a)
        assert s["macs"] == lstm_macs + dense_macs, f
        assert sum(st["bytes"] for st in a["state"]) == expected_state[f], f
        assert list(s["macs_by_dtype"]) == (["int8"] if "int8" in f else ["float32"])


def test_latency_estimate_follows_the_cost_model(tiny_models):
    a = latency.analyze_model(tiny_models / "int8.tflite", "tflite")
    p = load_profile("cortex_m4f")
    est = latency.estimate_latency(a, p)
    s = latency.summarize(a)
    cycles = (s["macs"] * p.cycles_per_mac_int8 + s["nonlinear"] * p.cycles_per_activation
              + s["elementwise"] * p.cycles_per_elementwise + s["ops"] * p.op_overhead_cycles)
    assert est["kind"] == "estimated" and est["method"]
    assert est["cycles"] == pytest.approx(cycles, abs=2)
    assert est["value"] == pytest.approx(cycles / p.clock_hz * 1e6, rel=1e-3)
    faster = latency.estimate_latency(a, load_profile("cortex_m7"))
    assert faster["value"] < est["value"]
