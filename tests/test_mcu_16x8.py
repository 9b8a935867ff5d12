"""16x8 models (int16 activations, int8 weights, int64 biases: export.quant16x8) through the MCU
generator: the numpy reference and the host build of the generated C equal TFLite Micro code for
code on every window (evaluation windows, random full-range int16 codes, the two extremes), and
what the 16x8 kernels do not cover is refused naming the op. (QEMU: tests/test_mcu.py.)"""
import shutil

import numpy as np
import pytest

from firmware_sim.mcu import fixedpoint as fp
from firmware_sim.mcu.host import HostModel
from firmware_sim.mcu.quant import quantize
from groundfloor import tflite_file
from groundfloor.errors import BadInput
from mcu_models import (NAMES_16X8, PROFILE, assert_host_build_equals_tflm, full_range_windows,  # noqa: F401
                        mcu_models, mcu_models_16x8)

needs_cc = pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")),
                              reason="needs a host C compiler")


def _windows(path, x_eval) -> np.ndarray:
    """The evaluation windows as int16 codes, then 8 random full-range windows and the two extremes."""
    from firmware_sim.mcu.lower import lower
    prog = lower(path)
    t = prog.tensor(prog.inputs[0])
    return full_range_windows(quantize(x_eval, t.sc, t.zp, "int16"), 8, seed=3)


def test_mbqm64_is_tflites_64_bit_rescaling():
    x = np.array([0, 1, -1, 12345678901, -12345678901, (1 << 46) - 1, -(1 << 46)])
    m, s = fp.quantize_multiplier(0.000123)
    want = [(int(v) * ((m + (1 << 15)) >> 16) + (1 << (15 - s - 1))) >> (15 - s) for v in x]
    assert fp.mbqm64(x, m, s).tolist() == want
    assert fp.mbqm64(np.array([1 << 20]), 0x7FFFFFFF, 0)[0] == (((1 << 20) * 0x7FFF + (1 << 14)) >> 15)
    # not the int32 double rounding: they differ on some accumulators
    v = np.arange(-5000, 5000) * 7919
    assert not np.array_equal(fp.mbqm64(v, m, s + 10), fp.mbqm(v, m, s + 10))


@needs_cc
@pytest.mark.parametrize("name", NAMES_16X8)
def test_16x8_host_build_and_reference_equal_tflm(mcu_models_16x8, tmp_path, name):
    from firmware_sim.mcu.lower import lower
    path = mcu_models_16x8[name]["tflite"]
    prog = lower(path)
    assert prog.bits == 16 and all(getattr(L, "bits", 16) == 16 for L in prog.layers)
    m = HostModel(path, tmp_path)
    assert m.dtype == np.int16
    q = _windows(path, mcu_models_16x8[name]["x_eval"])
    assert_host_build_equals_tflm(path, m, q, np.int16, reference_rows=slice(None, None, 4))
    with pytest.raises(BadInput, match="int16 codes, not int8"):
        m.predict_int8(q.astype(np.int8))


@needs_cc
def test_16x8_output_tracks_its_int8_twin(mcu_models, mcu_models_16x8, tmp_path):
    """Same weights, finer activations: the dequantized outputs of the two host builds agree
    within a few int8 output steps (int8 rounding compounds over the steps: 5 steps at worst
    measured), about one on average (a check of scales and layouts, not of exactness)."""
    x = mcu_models["small"]["x_eval"]
    y8 = HostModel(mcu_models["small"]["tflite"], tmp_path).predict(x)
    y16 = HostModel(mcu_models_16x8["small"]["tflite"], tmp_path).predict(x)
    m8 = HostModel(mcu_models["small"]["tflite"], tmp_path)
    assert np.abs(y16 - y8).max() <= 8 * m8.output_scale
    assert np.abs(y16 - y8).mean() <= m8.output_scale
    assert not np.array_equal(y16, y8)


def _retyped(src, dst, fn):
    m = tflite_file.read(src)
    fn(m, m.subgraphs[0], tflite_file.schema().TensorType)
    tflite_file.write(m, dst)
    return str(dst)


def test_16x8_refusals_name_the_problem(mcu_models, mcu_models_16x8, tmp_path):
    from firmware_sim.mcu.lower import lower
    src = mcu_models_16x8["small"]["tflite"]

    def int32_bias(m, sg, T):
        for op in sg.operators:
            if tflite_file.op_name(m, op) == "FULLY_CONNECTED":
                b = sg.tensors[op.inputs[2]]
                data = tflite_file.tensor_data(m, b).astype(np.int32)
                b.type = T.INT32
                tflite_file.set_tensor_data(m, b, data)

    def zero_point(m, sg, T):
        sg.tensors[sg.inputs[0]].quantization.zeroPoint = [5]

    def int8_output(m, sg, T):
        sg.tensors[sg.outputs[0]].type = T.INT8
    cases = [(int32_bias, "FULLY_CONNECTED op #.*bias must be constant int64"),
             (zero_point, "has zero point 5; int16 activations must be symmetric"),
             (int8_output, "model output .* is INT8; .* or a 16x8 one")]
    for k, (fn, msg) in enumerate(cases):
        with pytest.raises(BadInput, match=msg):
            lower(_retyped(src, tmp_path / f"bad{k}.tflite", fn))

    def int16_softmax(m, sg, T):        # the int8 classifier with int16 activations throughout
        for t in sg.tensors:
            if t.type == T.INT8 and not tflite_file.has_data(m, t):
                t.type = T.INT16
    bad = _retyped(mcu_models["classifier"]["tflite"], tmp_path / "softmax.tflite", int16_softmax)
    with pytest.raises(BadInput, match="SOFTMAX op #[0-9]+: not supported in a 16x8 model"):
        lower(bad)


needs_mcu = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                               reason="needs gcc-arm-none-eabi and qemu-system-arm")


@needs_mcu
@pytest.mark.parametrize("name", ["stacked", "seqdense"])
def test_16x8_firmware_equals_host_and_costs_about_its_int8_twin(mcu_models, mcu_models_16x8, tmp_path, name):
    """QEMU (M4, DSP kernels, plain C on 2 windows) equals the host build and TFLite Micro; the
    DSP 16x8 step costs at most 1.3x the instructions of the int8 twin (the issue's bound)."""
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu import run_emulated
    path = mcu_models_16x8[name]["tflite"]
    x = mcu_models_16x8[name]["x_eval"][:4]
    r = run_emulated(path, x, PROFILE, workdir=tmp_path / "16", plain_samples=2)
    assert r["status"] == "ok", r.get("error")
    assert r["outputs_int8"].dtype == np.int16
    assert r["reference_max_lsb_diff"] == 0 and r["tflm"]["max_lsb_diff"] == 0
    assert r["plain"]["outputs_identical"]
    host = HostModel(path, tmp_path / "host").predict_int8(_windows(path, x)[:len(x)])
    assert np.array_equal(r["outputs_int8"].reshape(host.shape), host)
    r8 = run_emulated(mcu_models[name]["tflite"], x, PROFILE, workdir=tmp_path / "8", plain=False,
                      compare_tflm=False)
    ratio = r["instructions_per_inference"] / r8["instructions_per_inference"]
    assert 0.8 < ratio <= 1.3, ratio
    assert r["instructions"]["mac_kernel_instr_per_mac"] == pytest.approx(
        r8["instructions"]["mac_kernel_instr_per_mac"], rel=0.05)      # the same MAC loops
    assert r["simd_vs_plain"] < 0.5                                    # SIMD really runs


@needs_mcu
def test_emulated_runner_takes_16x8(mcu_models_16x8, tmp_path):
    """The bench's emulated runner accepts an int16-activation .tflite and runs it like an int8
    one: host build on every window, QEMU on the first windows, equal to each other and TFLM."""
    pytest.importorskip("tflite_micro")
    from firmware_sim.profiles import load_profile
    from firmware_sim.runners import RunConfig, get_runner
    runner = get_runner("emulated")
    assert runner.accepts({"io": {"inputs": [{"dtype": "int16"}]}})[0]
    assert not runner.accepts({"io": {"inputs": [{"dtype": "float32"}]}})[0]
    np.savez(tmp_path / "x.npz", x=mcu_models_16x8["small"]["x_eval"][:6])
    rec = runner.run(mcu_models_16x8["small"]["tflite"], tmp_path / "x.npz", tmp_path / "y.npz",
                     RunConfig(timeout_s=300), extra={"profiles": [load_profile("cortex_m4f")]})
    assert rec["status"] == "ok", rec
    host, dev = rec["details"]["host_build"], rec["details"]["devices"]["cortex_m4f"]
    assert host["bit_exact"] and host["windows"] == 6
    assert dev["status"] == "ok" and dev["qemu_equals_host"]["equal"]
    assert dev["tflm"]["max_lsb_diff"] == 0 and dev["instructions"]["per_inference"] > 0
    assert dev["latency_us"] > 0
    lat = runner.device_figures(load_profile("cortex_m4f"), rec)["latency"]
    assert lat["instructions"] == int(dev["instructions"]["per_inference"])
