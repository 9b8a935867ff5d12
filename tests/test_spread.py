"""edge.spread: the spread arithmetic and table on made-up figures, which artifacts and runners it
plans, and (with QEMU user-mode emulation) that an emulated AVX2 CPU without VNNI really reaches
other int8 kernels: the signed-weight model the saturation check flags saturates there, the one
it clears does not, and a tiny artifacts folder goes through the whole measurement."""
import json
import platform
import shutil

import numpy as np
import pytest

from edge import spread
from groundfloor.errors import BadInput
from test_ort_saturation import K, N, T, _matmul_model
needs_qemu = pytest.mark.skipif(platform.machine() != "x86_64" or not shutil.which(spread.QEMU),
                                reason="needs an x86-64 host and qemu-x86_64 (Debian qemu-user)")


def _entry(runner, values: dict, identical=()):
    per_cpu = {c: {"status": "ok", "task_metric": v[0], "drift_rmse": v[1], "identical_to_native": c in identical}
               for c, v in values.items()}
    e = {"runner": runner, "n_windows": 10, "cpus": per_cpu}
    e["summary"] = spread.summarize(e)
    return e


def test_spread_of_skips_missing_values_and_a_zero_minimum():
    s = spread.spread_of({"a": 2.0, "b": 3.0, "c": None})
    assert (s["min"], s["max"], s["abs"], s["rel"], s["cpus"]) == (2.0, 3.0, 1.0, 0.5, 2)
    assert spread.spread_of({"a": 0.0, "b": 1.0})["rel"] is None
    assert spread.spread_of({"a": None})["cpus"] == 0


def test_summary_ratio_and_largest_spread():
    onnx_e = _entry("onnxruntime", {"native": (0.50, 0.05), "Haswell": (0.80, 0.90)}, identical=("native",))
    tfl_e = _entry("litert", {"native": (0.52, 0.10), "Haswell": (0.52, 0.10)}, identical=("native", "Haswell"))
    failed = {"file": "x", "runner": "tflm", "status": "failed", "error": "arena search failed"}
    assert onnx_e["summary"]["identical_to_native"] == ["native"]
    assert onnx_e["summary"]["figures"]["drift_rmse"]["rel"] == pytest.approx(17.0)
    models = {"m": {"task": "regression", "n_windows": 10, "controls": {},
                    "artifacts": {"onnx_dynamic_int8/onnxruntime": onnx_e, "tflite_int8/litert": tfl_e,
                                  "tflite_weight_int8/tflm": failed}}}
    ratios = spread.drift_ratios(models)["m"]
    assert ratios["native"]["ratio"] == pytest.approx(0.5) and ratios["native"]["within"]
    assert ratios["Haswell"]["ratio"] == pytest.approx(9.0) and not ratios["Haswell"]["within"]
    best = spread.max_rel_spread(models)
    assert best["drift_rmse"]["where"] == "m onnx_dynamic_int8/onnxruntime"
    assert best["task_metric"]["rel"] == pytest.approx(0.6)
    report = {"cpus": {"native": {"status": "ok"}, "Haswell": {"status": "ok"}, "Nehalem": {"status": "skipped"}},
              "emulator": "qemu", "not_covered": "AVX-512", "models": models,
              "drift_ratio": {"of": "ratio", "limit": 1.5, "models": spread.drift_ratios(models)}}
    text = "\n".join(spread.table_lines(report))
    assert "| m | tflite_int8 (litert) | 10 | RMSE 0.52 | 0.1 | Haswell |" in text
    assert "0.05 - 0.9 (1,700%)" in text and "not run: arena search failed" in text
    assert "9.00x" in text and "Nehalem" not in text
    from edge.readme_figures import spread_lines
    readme = "\n".join(spread_lines(report))
    assert "onnx_dynamic_int8 (onnxruntime) task metric 60%, drift RMSE 0.85 apart" in readme
    assert "tflite_int8 (litert) bit-identical" in readme
    assert "onnx_dynamic_int8: its figures hold only for the CPU" in readme and "tflite_int8: its" not in readme
    assert "tflite_int8 (litert)" in readme and "tflite_weight_int8" not in readme   # the README's rows only
    assert "not measured" in spread_lines(None)[0]


def test_plan_takes_host_runners_that_apply_and_skips_stream_and_failed_artifacts():
    manifest = {"artifacts": {
        "tflite_int8": {"file": "a.tflite", "format": "tflite", "status": "ok"},
        "onnx_float32": {"file": "a.onnx", "format": "onnx", "status": "ok"},
        "tflite_stream_int8": {"file": "s.tflite", "format": "tflite", "status": "ok", "streaming": True},
        "tflite_16x8": {"file": "b.tflite", "format": "tflite", "status": "not_applicable"}}}
    plan = {(name, r.name) for name, _, r in spread.plan_model(manifest, spread._host_runners())}
    assert ("tflite_int8", "litert") in plan and ("tflite_int8", "tflm") in plan
    assert ("onnx_float32", "onnxruntime") in plan
    assert not any(r == "emulated" for _, r in plan)            # the Cortex-M emulator is no host CPU
    assert not any(n in ("tflite_stream_int8", "tflite_16x8") for n, _ in plan)
    with_stream = spread.plan_model(manifest, spread._host_runners(), streaming=True)
    assert any(n == "tflite_stream_int8" for n, _, _ in with_stream)


def test_launchers_bad_cpu_and_missing_emulator(tmp_path, monkeypatch):
    assert spread.launcher("native") is None
    assert spread.launcher("Haswell") == [spread.QEMU, "-cpu", "Haswell"]
    with pytest.raises(BadInput, match="unknown CPU"):
        spread.measure(tmp_path, cpus=["Pentium"])
    with pytest.raises(BadInput, match="manifest"):
        spread.measure(tmp_path, cpus=["native"])
    monkeypatch.setattr(spread.shutil, "which", lambda _: None)
    ok, why = spread.available("Haswell")
    assert not ok and "qemu-user" in why and spread.available("native")[0]


# ------------------------------------------------------------------ under QEMU (a few seconds)

def _matmul(path, w):
    _matmul_model(path, w)   # x [1, T, K] -> MatMul(W [K, N]), float



def _windows(n=3):
    x = np.ones((n, T, K), np.float32)
    x[:, :, ::4] = -0.1     # most activation codes near 255: large pair sums
    return x


def _weights():
    w = np.full((K, N), 1.0)
    w[:, 1] = np.linspace(-1, 1, K)
    return w


def _run_onnx(path, x_path, out, cpu):
    from firmware_sim.runners import get_runner
    got, rec = spread._run_one(get_runner("onnxruntime"), path, x_path, out, {}, cpu, None)
    assert got is not None, rec
    return got


@needs_qemu
def test_emulated_no_vnni_cpu_saturates_what_the_check_flags(tmp_path):
    from export.onnx_export import quantize_dynamic_onnx
    from export.ort_saturation import check
    from groundfloor.fileio import write_npz
    from groundfloor.isolate import run_isolated
    probe = run_isolated("edge.spread:child_cpu_probe", {}, timeout=120, launcher=spread.launcher("Haswell"))
    assert probe.ok and "avx2" in probe.value["cpuid_features"]
    assert "avx512_vnni" not in probe.value["cpuid_features"] and "without VNNI" in probe.value["int8_dot_product"]
    _matmul(tmp_path / "f.onnx", _weights())
    spread.child_signed_control(str(tmp_path / "f.onnx"), str(tmp_path / "s8.onnx"))
    quantize_dynamic_onnx(str(tmp_path / "f.onnx"), str(tmp_path / "ours.onnx"))
    x = _windows()
    write_npz(tmp_path / "x.npz", x=x)
    exact = x @ _weights().astype(np.float32)
    assert check(tmp_path / "s8.onnx", x)["at_risk"] and not check(tmp_path / "ours.onnx", x)["at_risk"]
    s8 = _run_onnx(tmp_path / "s8.onnx", tmp_path / "x.npz", tmp_path / "o1.npz", "Haswell")
    ours = _run_onnx(tmp_path / "ours.onnx", tmp_path / "x.npz", tmp_path / "o2.npz", "Haswell")
    assert np.max(np.abs(s8 - exact)) > 2.0           # clipped int16 pair sums: 7.3 instead of 11.6
    assert np.max(np.abs(ours - exact)) < 0.2          # quantization error only


@needs_qemu
def test_measure_a_tiny_artifacts_folder_natively_and_emulated(tmp_path):
    art = tmp_path / "artifacts" / "tiny"
    art.mkdir(parents=True)
    w = _weights()
    _matmul(art / "f.onnx", w)
    x = _windows(4)
    y = x @ w.astype(np.float32)
    np.savez(art / "data.npz", x_eval=x, y_float=y, y_eval=y + 0.5)
    manifest = {"task": "regression",
                "artifacts": {"onnx_float32": {"file": "f.onnx", "format": "onnx", "status": "ok"}}}
    (art / "manifest.json").write_text(json.dumps(manifest))
    report = spread.measure(tmp_path / "artifacts", cpus=["native", "Haswell"], progress=lambda *_: None)
    rec = report["models"]["tiny"]
    f32 = rec["artifacts"]["onnx_float32/onnxruntime"]
    assert f32["cpus"]["Haswell"]["task_metric"] == pytest.approx(0.5, abs=1e-4)
    assert f32["cpus"]["Haswell"]["drift_rmse"] < 1e-5 and f32["summary"]["figures"]["drift_rmse"]["cpus"] == 2
    control = rec["controls"][spread.SIGNED_CONTROL]
    assert control["saturation_check"] is True and control["cpus"]["Haswell"]["drift_rmse"] > 1.0
    assert report["cpus"]["Haswell"]["int8_dot_product"].startswith("x86 AVX2 without VNNI")
    assert report["conversion"]["status"] == "skipped"    # no tf-keras source in the folder


def test_spread_by_artifact_pct_and_conversion_line():
    same = _entry("litert", {"native": (0.5, 0.1), "Haswell": (0.5, 0.1)}, identical=("native", "Haswell"))
    moved = _entry("onnxruntime", {"native": (0.5, 0.1), "Haswell": (0.6, 0.4)}, identical=("native",))
    models = {"a": {"task": "regression", "controls": {}, "artifacts": {"i8/litert": same, "q/onnxruntime": moved}},
              "b": {"task": "regression", "controls": {}, "artifacts": {"i8/litert": same}}}
    rows = spread.spread_by_artifact(models)
    assert rows["i8/litert"] == {"task_metric_rel": 0.0, "drift_rmse_abs": 0.0, "identical": True}
    assert rows["q/onnxruntime"]["task_metric_rel"] == pytest.approx(0.2) and not rows["q/onnxruntime"]["identical"]
    assert rows["q/onnxruntime"]["drift_rmse_abs"] == pytest.approx(0.3)
    assert set(spread.spread_by_artifact(models, keys=("i8/litert",))) == {"i8/litert"}
    assert [spread.pct(v) for v in (None, 1e-7, 3.2e-5, 0.015, 20.4)] == ["n/a", "<0.001%", "0.0032%", "1.5%", "2,040%"]
    report = {"cpus": {"native": {"status": "ok"}}, "not_covered": "", "models": {},
              "conversion": {"artifact": "tflite_int8", "model": "a", "byte_identical": False,
                             "cpus": {"native": {"sha256": "ab" * 32}, "Haswell": {"error": "timed out"}}}}
    text = "\n".join(spread.table_lines(report))
    assert "the bytes differ: native (abababababab), Haswell (timed out)" in text
