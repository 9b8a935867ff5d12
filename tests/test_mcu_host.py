"""The generated C compiled for the host (firmware_sim.mcu.host): equal to TFLite Micro code for
code on every evaluation window of each test model, the plain-C kernels really selected, free
of undefined behaviour under the sanitizer, cached by sources and compiler, and every odd input
refused with a clear error. (The QEMU build against the host build: tests/test_mcu.py.)"""
import shutil
import subprocess

import numpy as np
import pytest

from firmware_sim.mcu import host
from firmware_sim.mcu.host import HostModel, build_host, host_check, run_host_child
from firmware_sim.mcu.quant import dequantize, quantize, quantize_input
from groundfloor.errors import BadInput
from groundfloor.isolate import run_isolated
from mcu_models import (NAMES, PROFILE, assert_host_build_equals_tflm, full_range_windows,  # noqa: F401
                        mcu_models, with_unsupported_op)

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")),
                                reason="needs a host C compiler")
SANITIZE = ("-fsanitize=undefined", "-fno-sanitize-recover=all")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mcu_host_cache")


def _windows(model: HostModel, x_eval) -> np.ndarray:
    """The evaluation windows as int8 codes, then 16 random full-range windows and the two extremes."""
    return full_range_windows(quantize(x_eval, model.input_scale, model.input_zero_point), 16, seed=7)


def _saved_windows(mcu_models, name, cache, tmp_path):
    """(model path, HostModel, int8 windows, the .npz holding them as `x`)."""
    path = mcu_models[name]["tflite"]
    m = HostModel(path, cache)
    q = _windows(m, mcu_models[name]["x_eval"])
    np.savez(tmp_path / "x.npz", x=q)
    return path, m, q, tmp_path / "x.npz"


@pytest.mark.parametrize("name", NAMES)
def test_host_build_equals_tflm_on_every_window(mcu_models, cache, name):
    path = mcu_models[name]["tflite"]
    m = HostModel(path, cache)
    q = _windows(m, mcu_models[name]["x_eval"])
    y = assert_host_build_equals_tflm(path, m, q, np.int8, reference_rows=slice(0, 8))
    # state is reset per window: a window's output does not depend on the one before
    assert np.array_equal(m.predict_int8(q[::-1])[::-1], y)


def test_predict_quantizes_and_dequantizes(mcu_models, cache):
    from firmware_sim.mcu.lower import lower
    path = mcu_models["classifier"]["tflite"]
    m = HostModel(path, cache)
    x = mcu_models["classifier"]["x_eval"]
    q = quantize(x, m.input_scale, m.input_zero_point)
    assert np.array_equal(q.reshape(len(q), -1), quantize_input(lower(path), x))   # as run_emulated
    y = m.predict(x)
    assert y.dtype == np.float64
    assert np.array_equal(y, dequantize(m.predict_int8(q), m.output_scale, m.output_zero_point))
    assert np.array_equal(m.predict(x.astype(np.float64)), y)
    assert np.allclose(y.sum(axis=1), 1.0, atol=0.05)                 # softmax probabilities


def test_odd_inputs_are_refused_clearly(mcu_models, cache):
    m = HostModel(mcu_models["small"]["tflite"], cache)                # windows [N, 8, 2]
    good = np.zeros((3, 8, 2), np.int8)
    for bad in (np.zeros((3, 7, 2), np.int8), np.zeros((8, 2), np.int8),
                np.zeros((3, 8, 2, 1), np.int8), np.zeros((3, 16), np.int8)):
        with pytest.raises(BadInput, match=r"expected windows \[N, 8, 2\]"):
            m.predict_int8(bad)
    with pytest.raises(BadInput, match="int8 codes, not float32"):
        m.predict_int8(good.astype(np.float32))
    with pytest.raises(BadInput, match="float windows, not int8"):
        m.predict(good)
    with pytest.raises(BadInput, match="NaN or infinite"):
        m.predict(np.full((1, 8, 2), np.nan))
    assert m.predict_int8(good[:0]).shape == (0, 1)
    # the C harness checks its arguments too: codes, never an out-of-bounds access
    y = np.full(3, 99, np.int8)
    run = m._lib.mcu_host_run
    assert run(None, 48, y.ctypes.data, 3, 3) == -1
    assert run(good.ctypes.data, 48, None, 3, 3) == -1
    assert run(good.ctypes.data, 47, y.ctypes.data, 3, 3) == -2
    assert run(good.ctypes.data, 48, y.ctypes.data, 2, 3) == -2
    assert run(good.ctypes.data, -16, y.ctypes.data, -1, -1) == -2
    assert y.tolist() == [99, 99, 99]                                  # nothing written
    assert m._lib.mcu_host_info(None, 4) == -1


def test_host_build_selects_the_plain_kernels(mcu_models, cache, tmp_path):
    m = HostModel(mcu_models["small"]["tflite"], cache)
    assert m.info["simd"] == 0 and m.info["arena_bytes"] > 0
    cc = host.compiler()[0]
    src = str(host.HERE / "mcu_kernels.c")
    r = subprocess.run([cc, "-DMCU_SIMD=1", "-fsyntax-only", f"-I{host.HERE}", src],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "needs a target with the Arm DSP extension" in r.stderr
    arm = shutil.which("arm-none-eabi-gcc")
    if arm:    # the same header picks the DSP kernels where the Arm compiler says DSP
        probe = tmp_path / "probe.c"
        probe.write_text('#include "mcu_kernels.h"\nint simd = MCU_SIMD;\n')
        for cpu, want in (("cortex-m4", "1"), ("cortex-m7", "1"), ("cortex-m0", "0"), ("cortex-m3", "0")):
            out = subprocess.run([arm, f"-mcpu={cpu}", "-mthumb", "-E", "-P", f"-I{host.HERE}",
                                  str(probe)], capture_output=True, text=True, check=True).stdout
            assert f"int simd = {want};" in out, cpu


def test_library_is_cached_by_sources_and_compiler(mcu_models, tmp_path, monkeypatch):
    path = mcu_models["small"]["tflite"]
    first = build_host(path, tmp_path)
    assert not first["cached"] and first["meta"]["compiler"] == host.compiler()[1]
    assert first["meta"]["warnings"] == []                            # clean under -Wall
    again = build_host(path, tmp_path)
    assert again["cached"] and again["key"] == first["key"] and again["library"] == first["library"]
    assert build_host(mcu_models["stacked"]["tflite"], tmp_path)["key"] != first["key"]
    assert build_host(path, tmp_path, extra_cflags=("-O1",))["key"] != first["key"]
    cc = host.compiler()[0]
    monkeypatch.setattr(host, "compiler", lambda: (cc, "another compiler 99.1"))
    other = build_host(path, tmp_path)
    assert not other["cached"] and other["key"] != first["key"]
    monkeypatch.undo()
    (tmp_path / first["key"] / host.LIBRARY).unlink()                 # a broken entry is rebuilt
    rebuilt = build_host(path, tmp_path)
    assert not rebuilt["cached"] and rebuilt["key"] == first["key"]
    assert HostModel.from_library(rebuilt["dir"]).predict_int8(np.zeros((1, 8, 2), np.int8)).shape == (1, 1)


def test_a_refused_model_is_named_by_every_entry_point_before_writing(mcu_models, tmp_path):
    """A model with an op the generator lacks (SQUARE): the C generator, the QEMU run, the host
    build and host_check each refuse it naming the op, before building or writing anything."""
    from firmware_sim.mcu import generate_c, run_emulated
    bad = with_unsupported_op(mcu_models["small"]["tflite"], tmp_path / "bad.tflite")
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 8, 2), np.int8))
    entry_points = {
        "generate_c": lambda: generate_c(bad, tmp_path / "src"),
        "run_emulated": lambda: run_emulated(bad, np.zeros((1, 8, 2), np.float32), PROFILE, workdir=tmp_path / "w"),
        "HostModel": lambda: HostModel(bad, tmp_path / "cache"),
        "host_check": lambda: host_check(bad, tmp_path / "x.npz", tmp_path / "y.npz", cache_dir=tmp_path / "cache")}
    for name, call in entry_points.items():
        with pytest.raises(BadInput, match="unsupported op.*SQUARE"):
            call()
    assert not (tmp_path / "y.npz").exists() and not (tmp_path / "cache").exists()


def test_host_check_counts_every_window_and_writes_outputs(mcu_models, cache, tmp_path):
    pytest.importorskip("tflite_micro")
    path, m, q, x_path = _saved_windows(mcu_models, "stacked", cache, tmp_path)
    r = host_check(path, x_path, tmp_path / "y.npz", cache_dir=cache)
    assert r["status"] == "ok", r["error"]
    assert r["windows"] == r["windows_equal_to_tflm"] == len(q)
    assert r["max_lsb_diff"] == 0 and r["bit_exact"] is True
    assert r["host"]["cached"] and r["host"]["simd"] == 0 and r["host"]["seconds_per_window"] > 0
    with np.load(tmp_path / "y.npz") as f:
        assert np.array_equal(f["y"], m.predict_int8(q))
        assert np.array_equal(f["y_tflm"], f["y"]) and f["equal"].all() and len(f["equal"]) == len(q)
        assert np.array_equal(f["y_float"], dequantize(f["y"], r["output_scale"], r["output_zero_point"]))
    np.savez(tmp_path / "xf.npz", x=mcu_models["stacked"]["x_eval"])   # float windows: refused
    np.savez(tmp_path / "x0.npz", x=q[:0])
    np.savez(tmp_path / "nox.npz", windows=q)
    for bad, why in (("xf.npz", "int8 codes, not float32"), ("x0.npz", "holds no windows"),
                     ("nox.npz", "cannot read the windows"), ("missing.npz", "cannot read")):
        with pytest.raises(BadInput, match=why):
            host_check(path, tmp_path / bad, tmp_path / "yf.npz", cache_dir=cache)
    assert not (tmp_path / "yf.npz").exists()


def test_host_check_counts_differences_and_a_failing_tflm(mcu_models, cache, tmp_path, monkeypatch):
    from groundfloor import tflm
    path, m, q, x_path = _saved_windows(mcu_models, "small", cache, tmp_path)
    y = m.predict_int8(q).astype(np.int64)
    y[2] += 3 if y[2, 0] < 100 else -3
    y[5] += 1 if y[5, 0] < 127 else -1
    monkeypatch.setattr(tflm, "run", lambda *a, **k: {"outputs": [y.astype(np.int8)]})
    r = host_check(path, x_path, tmp_path / "y.npz", cache_dir=cache)
    assert r["status"] == "mismatch" and r["bit_exact"] is False
    assert r["windows_equal_to_tflm"] == len(q) - 2 and r["max_lsb_diff"] == 3
    with np.load(tmp_path / "y.npz") as f:
        assert np.flatnonzero(~f["equal"]).tolist() == [2, 5]

    def fail(*a, **k):
        raise RuntimeError("TFLite Micro: process crashed with SIGSEGV")
    monkeypatch.setattr(tflm, "run", fail)
    r = host_check(path, x_path, tmp_path / "y2.npz", cache_dir=cache)
    assert r["status"] == "unchecked" and "SIGSEGV" in r["error"] and r["windows_equal_to_tflm"] is None
    with np.load(tmp_path / "y2.npz") as f:
        assert np.array_equal(f["y"], m.predict_int8(q)) and "y_tflm" not in f


CRASHING_HARNESS = """
#include <stdint.h>
#define API __attribute__((visibility("default")))
API int32_t mcu_host_abi(void) { return 1; }
API int32_t mcu_host_info(int64_t *info, int64_t n)
{ info[0] = 16; info[1] = 1; info[2] = 256; info[3] = 0; return 0; }
API int32_t mcu_host_run(const int8_t *x, int64_t xb, int8_t *y, int64_t yb, int64_t n)
{ volatile int8_t *p = (int8_t *)0; *p = x[0]; return 0; }
"""


def test_a_crashing_library_costs_only_the_check(mcu_models, tmp_path):
    path = mcu_models["small"]["tflite"]
    b = build_host(path, tmp_path / "cache")
    src = tmp_path / "crash.c"
    src.write_text(CRASHING_HARNESS)
    subprocess.run([host.compiler()[0], *host.HOST_CFLAGS, str(src), "-o", b["library"]], check=True)
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 8, 2), np.int8))
    r = host_check(path, tmp_path / "x.npz", tmp_path / "y.npz", cache_dir=tmp_path / "cache")
    assert r["status"] == "crashed" and "SIGSEGV" in r["error"]
    assert not (tmp_path / "y.npz").exists()


@pytest.mark.parametrize("name", ["stacked", "classifier", "sequence"])
def test_kernels_run_clean_under_the_undefined_behaviour_sanitizer(mcu_models, cache, tmp_path, name):
    """Signed overflow or an out-of-range shift would let a compiler differ from the device:
    the sanitizer build (which aborts on the first one) gives the same codes on every window."""
    path = mcu_models[name]["tflite"]
    try:
        b = build_host(path, tmp_path, extra_cflags=SANITIZE)
    except RuntimeError as e:
        pytest.skip(f"no undefined-behaviour sanitizer here: {str(e)[-200:]}")
    path, m, q, x_path = _saved_windows(mcu_models, name, cache, tmp_path)
    r = run_isolated("firmware_sim.mcu.host:run_host_child",
                     {"library_dir": b["dir"], "inputs_path": str(x_path),
                      "outputs_path": str(tmp_path / "y.npz")}, timeout=300)
    assert r.ok, (r.error, r.stderr_tail)
    with np.load(tmp_path / "y.npz") as f:
        assert np.array_equal(f["y"], m.predict_int8(q))


def test_child_entry_point_in_process(mcu_models, cache, tmp_path):
    _, m, q, x_path = _saved_windows(mcu_models, "sequence", cache, tmp_path)
    out = run_host_child(m.build["dir"], str(x_path), str(tmp_path / "y.npz"))
    assert out["windows"] == len(q) and out["simd"] == 0
    with np.load(tmp_path / "y.npz") as f:
        assert f["y"].shape == (len(q), 6, 6) and np.array_equal(f["y"], m.predict_int8(q))
