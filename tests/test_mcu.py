"""The emulated microcontroller, for real: tiny int8 LSTMs (mcu_models.py, converted in a
subprocess), C generated, built with arm-none-eabi-gcc and run in qemu-system-arm, checked
against TFLite Micro, the numpy integer reference and the host build of the same C (host.py).
(A refused op through every entry point: tests/test_mcu_host.py.)"""
import shutil

import numpy as np
import pytest

from groundfloor.errors import BadInput
from mcu_models import PROFILE, mcu_models  # noqa: F401

pytestmark = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="needs gcc-arm-none-eabi and qemu-system-arm")


def _assert_host_equals(path, x, y_emulated, cache_dir):
    """The host build of the same generated C gives the QEMU build's int8 outputs."""
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("needs a host C compiler for the host build")
    from firmware_sim.mcu import quantize_input
    from firmware_sim.mcu.host import HostModel
    from firmware_sim.mcu.lower import lower
    m = HostModel(path, cache_dir)
    q = quantize_input(lower(path), x).reshape(-1, *m.input_shape[1:])
    assert np.array_equal(m.predict_int8(q), np.asarray(y_emulated).reshape(len(q), *m.output_shape[1:]))


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
        # the DSP build: the MAC loops (their own symbols) and the rest of the fused step, the
        # activations inside it; the plain build keeps them apart
        assert split["matrix"] > 0 and split["lstm_rest"] > 0 and split["activations"] == 0
        assert set(r["instructions"]["per_lstm_step"]) == {"matrix", "activations", "lstm_rest"}
        assert r["instructions"]["mac_kernel_instr_per_mac"] < 2.0   # padding on tiny layers
        if "plain" in r and r["plain"].get("instructions"):
            assert r["plain"]["instructions"]["split"]["activations"] > 0
    assert r["latency_s"] > 0


def test_small_lstm_matches_tflm(mcu_models, tmp_path):
    from firmware_sim.mcu import run_emulated
    path = mcu_models["small"]["tflite"]
    x = np.random.default_rng(1).normal(size=(6, 8, 2)).astype(np.float32)
    r = run_emulated(path, x, PROFILE, workdir=tmp_path)
    _check_common(r, 6)
    assert r["plain"]["outputs_identical"]
    assert 0 < r["simd_vs_plain"] < 1
    # the int8 path gives the same answer
    from firmware_sim.mcu import quantize_input
    from firmware_sim.mcu.lower import lower
    q = quantize_input(lower(path), x)
    r2 = run_emulated(path, q.reshape(6, 8, 2), PROFILE, workdir=tmp_path / "q",
                      compare_tflm=False, plain=False)
    assert np.array_equal(r2["outputs_int8"], r["outputs_int8"])
    _assert_host_equals(path, x, r["outputs_int8"], tmp_path / "host")


def test_tflm_arena_search(mcu_models, tmp_path):
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu import run_emulated
    x = np.random.default_rng(3).normal(size=(2, 8, 2)).astype(np.float32)
    r = run_emulated(mcu_models["small"]["tflite"], x, PROFILE, workdir=tmp_path, plain=False,
                     tflm_arena="search")
    assert r["status"] == "ok", r.get("error")
    t = r["tflm"]
    # the searched minimum (exact, by bisection) is the arena the RAM ratio is taken against
    assert t["arena_min_bytes"] > 0 and t["ram_vs_tflm_arena"] == round(r["ram_bytes"] / t["arena_min_bytes"], 3)


def test_stacked_lstm_matches_tflm_on_m7(mcu_models, tmp_path):
    from firmware_sim.mcu import run_emulated
    path = mcu_models["stacked"]["tflite"]
    x = np.random.default_rng(2).normal(size=(4, 12, 3)).astype(np.float32)
    r = run_emulated(path, x, PROFILE, board="mps2-an500", workdir=tmp_path, plain_samples=2)
    _check_common(r, 4)
    assert r["core"] == "Cortex-M7"
    assert r["plain"]["outputs_identical"]
    # stacked LSTMs run step by step: no stored inner sequence, far below TFLM's arena
    if r["tflm"].get("arena_reported_bytes"):
        assert r["ram_bytes"] < r["tflm"]["arena_reported_bytes"]
    _assert_host_equals(path, x, r["outputs_int8"], tmp_path / "host")


@pytest.mark.parametrize("name", ["classifier", "sequence", "seqdense"])
def test_softmax_and_sequence_outputs_equal_tflm_and_the_host(mcu_models, tmp_path, name):
    """A subset of the evaluation windows through QEMU: the DSP build, the plain build, TFLite
    Micro and the host build give the same codes (the host build covers every window:
    test_mcu_host.py). seqdense: the Dense runs on every row of the sequence, not the first."""
    from firmware_sim.mcu import run_emulated
    path, x = mcu_models[name]["tflite"], mcu_models[name]["x_eval"][:4]
    r = run_emulated(path, x, PROFILE, workdir=tmp_path, plain_samples=2)
    _check_common(r, 4)
    assert r["plain"]["outputs_identical"] and r["tflm"]["max_lsb_diff"] == 0
    _assert_host_equals(path, x, r["outputs_int8"], tmp_path / "host")


def test_generate_c_and_build(mcu_models, tmp_path):
    from firmware_sim.mcu import build, generate_c
    info = generate_c(mcu_models["stacked"]["tflite"], tmp_path / "src")
    assert (tmp_path / "src" / "model.c").exists() and (tmp_path / "src" / "model.h").exists()
    assert info["arena_bytes"] > 0 and info["lstm_gate_macs"] == 12 * (4 * 32 * 35 + 4 * 16 * 48)
    b = build(tmp_path / "src", tmp_path / "b", PROFILE, "mps2-an386", "plain")
    assert b["flash_bytes"] >= b["text_rodata"] > 0


def test_too_small_flash_fails_with_sizes(mcu_models, tmp_path):
    from firmware_sim.mcu import ModelTooLarge, build, generate_c, run_emulated
    tiny = {"flash_bytes": 2048, "sram_bytes": 64 * 1024, "clock_hz": 48_000_000}
    r = run_emulated(mcu_models["small"]["tflite"], np.zeros((1, 8, 2), np.float32), tiny, workdir=tmp_path,
                     compare_tflm=False)
    assert r["status"] == "too_large"
    assert "flash needs" in r["error"] and "2,048 B" in r["error"]
    assert r["sizes"]["flash_bytes"] > 2048
    generate_c(mcu_models["small"]["tflite"], tmp_path / "src")
    with pytest.raises(ModelTooLarge) as e:
        build(tmp_path / "src", tmp_path / "b", tiny)
    assert e.value.sizes["flash_budget"] == 2048


def test_bad_profile_and_input(mcu_models, tmp_path):
    from firmware_sim.mcu import run_emulated
    with pytest.raises(BadInput, match="flash_bytes"):
        run_emulated(mcu_models["small"]["tflite"], np.zeros((1, 8, 2)), {"sram_bytes": 1024})
    with pytest.raises(BadInput, match="multiple of the model input"):
        run_emulated(mcu_models["small"]["tflite"], np.zeros((1, 7, 2)), PROFILE, workdir=tmp_path)


def test_narrow_lstm_cost_and_memory(mcu_models, tmp_path):
    """LSTM(8) on 4 inputs, 32 steps (per-element overhead dominates): bit-exact with TFLite
    Micro, its instructions per gate MAC within the issue's 3.5 and its RAM held where the fused
    DSP kernels put them (measured 3.37, the input multiplied inside the recurrent pass, and 0.15
    of TFLite Micro's reported arena on M4, 2026-12-01)."""
    from firmware_sim.mcu import run_emulated
    path, x = mcu_models["narrow"]["tflite"], mcu_models["narrow"]["x_eval"][:3]
    r = run_emulated(path, x, PROFILE, workdir=tmp_path, plain_samples=1)
    _check_common(r, 3)
    assert r["plain"]["outputs_identical"] and r["tflm"]["max_lsb_diff"] == 0
    ins = r["instructions"]
    assert ins["per_inference"] / ins["gate_macs"] <= 3.5
    if r["tflm"].get("arena_reported_bytes"):
        assert r["ram_bytes"] <= 0.3 * r["tflm"]["arena_reported_bytes"]


def test_generic_gate_rescaling_path_is_exact(mcu_models, tmp_path):
    """The DSP kernels' slower gate requantization (any left shift, a right shift of 0), which
    no test model needs, forced on: still the numpy integer reference, code for code."""
    from firmware_sim.mcu import build, generate_c, quantize_input, reference
    from firmware_sim.mcu.firmware import run_firmware
    from firmware_sim.mcu.lower import lower
    path = mcu_models["stacked"]["tflite"]
    generate_c(path, tmp_path / "src")
    model_c = tmp_path / "src" / "model.c"
    text = model_c.read_text()
    assert text.count(".rq_generic = 0,") == 2
    model_c.write_text(text.replace(".rq_generic = 0,", ".rq_generic = 1,"))
    b = build(tmp_path / "src", tmp_path / "b", PROFILE, "mps2-an386", "simd")
    prog = lower(path)
    q = quantize_input(prog, mcu_models["stacked"]["x_eval"][:3])
    run = run_firmware(b["elf"], q, prog.tensor(prog.outputs[0]).size, tmp_path / "run",
                       "mps2-an386", use_plugin=False)
    ref = np.stack([reference.run(prog, xi)[0].reshape(-1) for xi in q])
    assert np.array_equal(run["outputs"], ref)
