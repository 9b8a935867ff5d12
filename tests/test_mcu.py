"""The emulated microcontroller, for real: tiny int8 LSTMs converted in a subprocess, C
generated, built with arm-none-eabi-gcc and run in qemu-system-arm, checked against
TFLite Micro and the numpy integer reference."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from groundfloor.errors import BadInput

pytestmark = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="needs gcc-arm-none-eabi and qemu-system-arm")

PROFILE = {"flash_bytes": 256 * 1024, "sram_bytes": 64 * 1024, "clock_hz": 80_000_000}

MAKE_MODELS = textwrap.dedent("""
    import os, sys
    import numpy as np
    import tensorflow as tf
    import tf_keras as K
    out = sys.argv[1]

    def convert(model, X, path):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([X[i:i + 1]] for i in range(len(X)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with open(path, "wb") as f:
            f.write(conv.convert())

    rng = np.random.default_rng(0)
    K.utils.set_random_seed(0)  # Python, numpy and TF: unseeded initializers draw from Python random
    X = rng.normal(size=(64, 8, 2)).astype(np.float32)
    m = K.Sequential([K.layers.Input((8, 2), batch_size=1), K.layers.LSTM(8), K.layers.Dense(1)])
    m.compile("adam", "mse"); m.fit(X, X[:, -1, :1], epochs=1, verbose=0)
    convert(m, X, os.path.join(out, "small.tflite"))
    X = rng.normal(size=(64, 12, 3)).astype(np.float32)
    m = K.Sequential([K.layers.Input((12, 3), batch_size=1),
                      K.layers.LSTM(32, return_sequences=True), K.layers.LSTM(16),
                      K.layers.Dense(1)])
    m.compile("adam", "mse"); m.fit(X, X[:, -1, :1], epochs=1, verbose=0)
    convert(m, X, os.path.join(out, "stacked.tflite"))
""")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("mcu_models")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, "-c", MAKE_MODELS, str(d)], capture_output=True,
                       text=True, env=env, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"model conversion failed ({r.returncode}): {r.stderr[-2000:]}")
    return {"small": str(d / "small.tflite"), "stacked": str(d / "stacked.tflite")}


def _check_common(r, n):
    assert r["status"] == "ok", r.get("error")
    assert r["outputs_int8"].shape[0] == n and r["outputs_int8"].dtype == np.int8
    assert np.allclose(r["outputs"], (r["outputs_int8"].astype(float) - r["output_zero_point"])
                       * r["output_scale"])
    assert r["reference_max_lsb_diff"] == 0          # firmware == numpy integer reference
    assert r["tflm"]["status"] == "ok"
    assert r["tflm"]["max_lsb_diff"] <= 1            # firmware vs TFLite Micro
    assert r["flash_bytes"] > 0 and r["ram_bytes"] > r["ram"]["static_bytes"] > 0
    assert r["instructions"]["per_inference"] > 0
    split = r["instructions"]["split"]
    if split is not None:                            # exact counts from the TCG plugin
        assert split["matrix"] > 0 and split["activations"] > 0 and split["lstm_rest"] > 0
        assert set(r["instructions"]["per_lstm_step"]) == {"matrix", "activations", "lstm_rest"}
    assert r["latency_s"] > 0


def test_small_lstm_matches_tflm(models, tmp_path):
    from firmware_sim.mcu import run_emulated
    x = np.random.default_rng(1).normal(size=(6, 8, 2)).astype(np.float32)
    r = run_emulated(models["small"], x, PROFILE, workdir=tmp_path)
    _check_common(r, 6)
    assert r["plain"]["outputs_identical"]
    assert 0 < r["simd_vs_plain"] < 1
    # the int8 path gives the same answer
    from firmware_sim.mcu import quantize_input
    from firmware_sim.mcu.lower import lower
    q = quantize_input(lower(models["small"]), x)
    r2 = run_emulated(models["small"], q.reshape(6, 8, 2), PROFILE, workdir=tmp_path / "q",
                      compare_tflm=False, plain=False)
    assert np.array_equal(r2["outputs_int8"], r["outputs_int8"])


def test_tflm_arena_search(models, tmp_path):
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu import run_emulated
    x = np.random.default_rng(3).normal(size=(2, 8, 2)).astype(np.float32)
    r = run_emulated(models["small"], x, PROFILE, workdir=tmp_path, plain=False, tflm_arena="search")
    assert r["status"] == "ok", r.get("error")
    t = r["tflm"]
    # the searched minimum (exact, by bisection) is the arena the RAM ratio is taken against
    assert t["arena_min_bytes"] > 0 and t["ram_vs_tflm_arena"] == round(r["ram_bytes"] / t["arena_min_bytes"], 3)


def test_stacked_lstm_matches_tflm_on_m7(models, tmp_path):
    from firmware_sim.mcu import run_emulated
    x = np.random.default_rng(2).normal(size=(4, 12, 3)).astype(np.float32)
    r = run_emulated(models["stacked"], x, PROFILE, board="mps2-an500", workdir=tmp_path,
                     plain_samples=2)
    _check_common(r, 4)
    assert r["core"] == "Cortex-M7"
    assert r["plain"]["outputs_identical"]
    # stacked LSTMs run step by step: no stored inner sequence, far below TFLM's arena
    if r["tflm"].get("arena_reported_bytes"):
        assert r["ram_bytes"] < r["tflm"]["arena_reported_bytes"]


def test_generate_c_and_build(models, tmp_path):
    from firmware_sim.mcu import build, generate_c
    info = generate_c(models["stacked"], tmp_path / "src")
    assert (tmp_path / "src" / "model.c").exists() and (tmp_path / "src" / "model.h").exists()
    assert info["arena_bytes"] > 0 and info["lstm_gate_macs"] == 12 * (4 * 32 * 35 + 4 * 16 * 48)
    b = build(tmp_path / "src", tmp_path / "b", PROFILE, "mps2-an386", "plain")
    assert b["flash_bytes"] >= b["text_rodata"] > 0


def test_too_small_flash_fails_with_sizes(models, tmp_path):
    from firmware_sim.mcu import ModelTooLarge, build, generate_c, run_emulated
    tiny = {"flash_bytes": 2048, "sram_bytes": 64 * 1024, "clock_hz": 48_000_000}
    r = run_emulated(models["small"], np.zeros((1, 8, 2), np.float32), tiny, workdir=tmp_path,
                     compare_tflm=False)
    assert r["status"] == "too_large"
    assert "flash needs" in r["error"] and "2,048 B" in r["error"]
    assert r["sizes"]["flash_bytes"] > 2048
    generate_c(models["small"], tmp_path / "src")
    with pytest.raises(ModelTooLarge) as e:
        build(tmp_path / "src", tmp_path / "b", tiny)
    assert e.value.sizes["flash_budget"] == 2048


def _retag_op(src, dst, old, new):
    """Copy a .tflite with every `old` builtin operator code replaced by `new`."""
    from groundfloor import tflite_file
    m = tflite_file.read(src)
    for oc in m.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == old:
            oc.builtinCode = new
            oc.deprecatedBuiltinCode = min(new, 127)
    tflite_file.write(m, dst)


def test_unsupported_op_is_named(models, tmp_path):
    from firmware_sim.mcu import generate_c, run_emulated
    from groundfloor import tflite_file
    ops = tflite_file.schema().BuiltinOperator
    bad = tmp_path / "bad.tflite"
    _retag_op(models["small"], bad, ops.FULLY_CONNECTED, ops.SQUARE)
    with pytest.raises(BadInput, match="SQUARE"):
        generate_c(bad, tmp_path / "src")
    with pytest.raises(BadInput, match="unsupported op.*SQUARE"):
        run_emulated(bad, np.zeros((1, 8, 2), np.float32), PROFILE, workdir=tmp_path / "w")


def test_bad_profile_and_input(models, tmp_path):
    from firmware_sim.mcu import run_emulated
    with pytest.raises(BadInput, match="flash_bytes"):
        run_emulated(models["small"], np.zeros((1, 8, 2)), {"sram_bytes": 1024})
    with pytest.raises(BadInput, match="multiple of the model input"):
        run_emulated(models["small"], np.zeros((1, 7, 2)), PROFILE, workdir=tmp_path)
