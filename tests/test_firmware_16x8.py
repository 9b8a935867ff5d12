"""`edge firmware` for 16x8 models (int16 activations, int8 weights, int64 biases): the library's
host build equals TFLite Micro code for code on every window (whole window, every step of the
streaming twin, the first n steps), stepping equals the whole window, the first-n call equals n
steps, the float calls quantize to int16, the API is typed int16_t, bad arguments return the
error codes, the shipped Makefile / CMake build with arm-none-eabi-gcc, and an artifact that is
not there is refused in one line before anything is written. The 16x8 softmax (int16 -> int16,
TFLite Micro's lookup tables) makes a 16x8 classifier run too."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from firmware_sim.mcu.libhost import LibraryHost, spread_lengths, stream_at, verify
from groundfloor import tflite_file
from groundfloor.errors import BadInput
from library_checks import (ARM, LENGTH, LIBRARY_API, NEEDS_CC, NOT_INIT, NULL, OK, VALUE,  # noqa: F401
                            build_folder_as_shipped, code_windows, host_library, run_bad_calls,
                            stream_example_in_qemu)
from library_checks import cache  # noqa: F401  (the fixture)
from mcu_models import NAMES_16X8, mcu_models, mcu_models_16x8  # noqa: F401

pytestmark = NEEDS_CC


_lib = host_library


def _windows(lib, x_eval) -> np.ndarray:
    return code_windows(lib, x_eval, 8, "int16")


def _check_all_equal(r, n):
    assert r["status"] == "ok", r
    for name, c in r["checks"].items():
        assert c["windows_equal"] == c["windows"] and c["max_lsb_diff"] == 0, (name, c)
    assert r["checks"]["whole_vs_tflm"]["windows"] == n


@pytest.mark.parametrize("name", NAMES_16X8)
def test_16x8_library_equals_tflm_on_every_window(mcu_models_16x8, cache, name):
    pytest.importorskip("tflite_micro")
    path = mcu_models_16x8[name]["tflite"]
    lib = _lib(path, cache)
    assert lib.dtype == np.int16 and lib.info["bits"] == 16
    x = mcu_models_16x8[name]["x_eval"]
    q = _windows(lib, x)
    r = verify(path, q, cache_dir=cache)
    _check_all_equal(r, len(q))
    T = lib.T
    assert {"whole_vs_tflm", "step_vs_tflm_stream", "step_T_vs_whole", "first_n_vs_step"} | {
        f"first_{n}_vs_tflm_{n}_steps" for n in {1, T // 2, T - 1} if 1 <= n < T} <= set(r["checks"])
    y = lib.windows(q)
    assert y.dtype == np.int16
    assert len(np.unique(y.reshape(len(y), -1), axis=0)) > len(q) // 4     # not a constant model
    # the float calls on the evaluation windows: int16 quantization, dequantized outputs
    rf = verify(path, q[:len(x)], x, cache_dir=cache)
    _check_all_equal(rf, len(x))
    assert {"quantize_vs_numpy", "dequantize_vs_numpy", "run_f_vs_run", "step_f_vs_step"} <= set(rf["checks"])


@pytest.mark.parametrize("name", ["stacked", "seqdense"])
def test_16x8_step_and_first_n_equal_the_whole_window(mcu_models_16x8, cache, name):
    lib = _lib(mcu_models_16x8[name]["tflite"], cache)
    q = _windows(lib, mcu_models_16x8[name]["x_eval"])[:6]
    stream, whole = lib.stream(q), lib.windows(q)
    if lib.sequence:
        assert np.array_equal(stream, whole)
    else:
        assert np.array_equal(stream[:, -1], whole[:, 0])
    ns = spread_lengths(len(q), lib.T)
    assert np.array_equal(lib.first_n(q, ns), stream_at(stream, ns, lib.sequence))
    w, n = q[0], max(1, lib.T // 2)
    assert np.array_equal(lib.run_steps(w, n), stream[0, :n] if lib.sequence else stream[0, n - 1:n])
    assert np.array_equal(np.stack([lib.step(w[t]) for t in range(n, lib.T)]), stream[0, n:])
    lib.reset()
    assert np.array_equal(lib.step(w[0]), stream[0, 0])
    assert not np.array_equal(stream[0, 0], stream[0, -1])
    # int16 codes really reach the kernels: beyond the int8 range
    assert np.abs(whole.astype(np.int32)).max() > 127


def test_16x8_api_is_typed_int16(mcu_models_16x8):
    from firmware_sim.mcu.library import render_library
    lib = render_library(mcu_models_16x8["small"]["tflite"])
    h = lib.header
    for proto in ("model_run(const int16_t *x, int16_t *y)",
                  "model_run_steps(const int16_t *x, int32_t n, int16_t *y)",
                  "model_step(const int16_t *x, int16_t *y)",
                  "model_quantize(const float *x, int16_t *q, int32_t n)",
                  "model_dequantize(const int16_t *q, float *y, int32_t n)"):
        assert proto in h
    assert "int8_t" not in h
    T, F = lib.info["steps"], lib.info["features"]
    assert re.search(rf"#define MODEL_INPUT_CODES {T * F}\b", h)
    assert "#define MODEL_INPUT_BYTES (2 * MODEL_INPUT_CODES)" in h
    assert lib.info["code_type"] == "int16"


BAD_CALLS = """
T, F, row = lib.T, lib.F, lib.row
x, xf = np.zeros((T, F), np.int16), np.zeros((T, F), np.float32)
y, yf = np.full((T + 1, row), 7777, np.int16), np.zeros((T + 1, row), np.float32)
out = {"before_init": [lib.call("model_run", x, y), lib.call("model_step", x, y)]}
out["init"] = lib.call("model_init")
out["null"] = [lib.call(n, *a) for n, a in (
    ("model_run", (None, y)), ("model_run", (x, None)), ("model_run_steps", (None, 1, y)),
    ("model_step", (x, None)), ("model_run_f", (None, yf)), ("model_step_f", (xf, None)),
    ("model_quantize", (None, x, 1)), ("model_dequantize", (x, None, 1)))]
out["length"] = [lib.call("model_run_steps", x, n, y) for n in (0, -1, T + 1, 2**31 - 1)]
out["length"] += [lib.call("model_run_steps_f", xf, T + 1, yf), lib.call("model_quantize", xf, x, 0)]
out["untouched"] = bool((y == 7777).all())
xf[0, 0] = np.nan
out["nan"] = lib.call("model_step_f", xf, yf)
xf[0, 0] = 1e30                               # clipped to the int16 range, not wrapped
q = np.zeros(2, np.int16)
out["clip"] = [lib.call("model_quantize", np.array([1e30, -1e30], np.float32), q, 2), q.tolist()]
out["ok"] = [lib.call("model_run", x, y), lib.call("model_run_steps", x, T, y),
             lib.call("model_step", x, y), lib.call("model_run_f", xf, yf)]
print(json.dumps(out))
"""


def test_16x8_bad_arguments_return_codes(mcu_models_16x8, tmp_path):
    out = run_bad_calls(mcu_models_16x8["small"]["tflite"], tmp_path, BAD_CALLS)
    assert out["before_init"] == [NOT_INIT] * 2 and out["init"] == OK
    assert out["null"] == [NULL] * 8
    assert out["length"] == [LENGTH] * 6
    assert out["untouched"]
    assert out["nan"] == VALUE
    assert out["clip"] == [OK, [32767, -32768]]
    assert out["ok"] == [OK] * 4


@ARM
def test_16x8_library_folder_builds_with_makefile_and_cmake(mcu_models_16x8, tmp_path):
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu.bundle import write_library
    name = "stacked"
    path = mcu_models_16x8[name]["tflite"]
    out = tmp_path / "fw"
    lib = LibraryHost(path, tmp_path / "cache")
    q = _windows(lib, mcu_models_16x8[name]["x_eval"])[:10]
    r = write_library(path, out, name=name, windows=(q, None, "test windows"))
    assert r["verification"]["status"] == "ok" and r["library"]["code_type"] == "int16"
    m4, m0 = r["sizes"]["cores"]["cortex-m4"], r["sizes"]["cores"]["cortex-m0"]
    weights = 4 * 32 * (3 + 32) + 4 * 16 * (32 + 16)
    assert m4["const_bytes"] >= weights and m0["const_bytes"] >= weights
    assert m4["bss_bytes"] >= r["library"]["arena_bytes"] and not m4["warnings"]
    readme = (out / "README.md").read_text()
    assert "16x8 LSTM firmware library" in readme and "the codes are `int16_t`" in readme
    assert f"**{m4['flash_bytes']:,} B**" in readme
    syms = build_folder_as_shipped(out)
    assert LIBRARY_API <= syms["build"] and "mcu_act_tab" in syms["build"]   # the DSP build
    assert LIBRARY_API <= syms["build-m0"]
    if "cbuild" not in syms:
        pytest.skip("cmake not installed")
    assert LIBRARY_API <= syms["cbuild"]


def _artifacts_folder(tmp_path, mcu_models, mcu_models_16x8, with_16x8: bool):
    art = tmp_path / "artifacts" / "tiny"
    art.mkdir(parents=True)
    shutil.copyfile(mcu_models["small"]["tflite"], art / "model_int8.tflite")
    arts = {"tflite_int8": {"file": "model_int8.tflite", "status": "ok"}}
    if with_16x8:
        shutil.copyfile(mcu_models_16x8["small"]["tflite"], art / "model_16x8.tflite")
        arts["tflite_16x8"] = {"file": "model_16x8.tflite", "status": "ok"}
    else:
        arts["tflite_16x8"] = {"file": "model_16x8.tflite", "status": "not_applicable",
                               "error": "the 16x8 rewrite does not handle SQUARE"}
    (art / "manifest.json").write_text(json.dumps({"model": "tiny", "artifacts": arts}))
    np.savez(art / "data.npz", x_eval=mcu_models["small"]["x_eval"][:12])
    return art


@ARM
def test_cli_16x8_artifact_and_refusals(mcu_models, mcu_models_16x8, tmp_path, monkeypatch, capsys):
    pytest.importorskip("tflite_micro")
    import edge.cli
    _artifacts_folder(tmp_path, mcu_models, mcu_models_16x8, with_16x8=True)
    monkeypatch.chdir(tmp_path)
    assert edge.cli.main(["firmware", "tiny", "--artifact", "tflite_16x8"]) == 0
    assert "verified on 12 evaluation windows (data.npz): ok" in capsys.readouterr().out
    header = (tmp_path / "reports" / "tiny" / "firmware" / "model.h").read_text()
    assert "model_step(const int16_t *x, int16_t *y)" in header
    # a 16x8 .tflite given by path, verified on random int16 windows
    assert edge.cli.main(["firmware", mcu_models_16x8["small"]["tflite"], "--out",
                          str(tmp_path / "bypath"), "--max-samples", "5"]) == 0
    assert "verified on 5 random int16 windows: ok" in capsys.readouterr().out
    # an artifact the manifest does not have built: one line naming why, nothing written
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    _artifacts_folder(other, mcu_models, mcu_models_16x8, with_16x8=False)
    assert edge.cli.main(["firmware", "tiny", "--artifact", "tflite_16x8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tflite_16x8" in err and "SQUARE" in err
    assert not (other / "reports").exists()
    with pytest.raises(SystemExit) as e:                          # not an artifact kind at all
        edge.cli.main(["firmware", "tiny", "--artifact", "tflite_float32"])
    assert e.value.code == 2 and not (other / "reports").exists()


def test_refused_16x8_models_write_nothing(mcu_models_16x8, tmp_path):
    from firmware_sim.mcu.bundle import write_library
    src = mcu_models_16x8["small"]["tflite"]
    m = tflite_file.read(src)
    sg = m.subgraphs[0]
    sg.tensors[sg.outputs[0]].type = tflite_file.schema().TensorType.INT8
    tflite_file.write(m, tmp_path / "mixed.tflite")
    with pytest.raises(BadInput, match=r"model output .* is INT8; .* or a 16x8 one") as e:
        write_library(tmp_path / "mixed.tflite", tmp_path / "out" / "lib", name="mixed")
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ the 16x8 softmax

@pytest.fixture(scope="module")
def classifier_16x8(mcu_models_16x8):
    """The int8 classifier (LSTM -> Dense -> SOFTMAX) as export.quant16x8 rewrites it: the softmax
    int16 -> int16 with TFLite Micro's output quantization (scale 2^-15, zero point 0)."""
    return mcu_models_16x8["classifier"]["tflite"]


def test_int16_softmax_tables_and_reference_match_tflm_on_many_rows(tmp_path):
    """The int16 softmax alone (a 1-op model: exp table, reciprocal table, rescaling) against
    TFLite Micro on rows spread over the whole int16 range and several input scales."""
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu import fixedpoint as fp
    from groundfloor import tflm
    exp_lut, recip_lut = fp.softmax16_tables()
    assert exp_lut[512] == 32767 and recip_lut[0] == 32767 and recip_lut[512] == 16384
    assert np.all(np.diff(exp_lut) >= 0) and np.all(np.diff(recip_lut) <= 0)
    rng = np.random.default_rng(5)
    for scale in (1e-4, 1.7e-3, 2.2e-2):
        path = _softmax_only_model(tmp_path / f"sm_{scale}.tflite", scale, depth=7)
        x = rng.integers(-32768, 32768, size=(300, 1, 7))             # the whole int16 range
        x[:150] = np.clip(rng.normal(0, 2.0 / scale, size=(150, 1, 7)), -32768, 32767)  # real logits
        x[150:160] = x[150:151]                                       # equal rows
        x[160:170, 0, :3] = x[160:170, 0, 3:4]                        # ties within a row
        x = x.astype(np.int16)
        want = tflm.run(path, x, reset_every=1)["outputs"][0].reshape(len(x), 7)
        m, s = fp.softmax16_params(1.0, float(np.float32(scale)))
        got = fp.softmax_int16(x.reshape(len(x), 7), m, s, exp_lut, recip_lut)
        assert np.array_equal(got, want), (scale, np.abs(got - want).max())
        assert len(np.unique(want[:150], axis=0)) == 150          # not saturated


def _softmax_only_model(dst, scale, depth):
    """A one-op SOFTMAX model, int16 [1, 1, depth] (input scale `scale`) -> int16 (2^-15)."""
    S = tflite_file.schema()
    t_in, t_out = S.TensorT(), S.TensorT()
    for t, name, sc in ((t_in, b"x", scale), (t_out, b"y", 1.0 / 32768)):
        t.shape, t.type, t.buffer, t.name = np.array([1, 1, depth], np.int32), S.TensorType.INT16, 0, name
        t.quantization = S.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [sc], [0]
    op = S.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0], np.int32), np.array([1], np.int32)
    op.builtinOptionsType = S.BuiltinOptions.SoftmaxOptions
    op.builtinOptions = S.SoftmaxOptionsT()
    op.builtinOptions.beta = 1.0
    sg = S.SubGraphT()
    sg.tensors, sg.operators = [t_in, t_out], [op]
    sg.inputs, sg.outputs = np.array([0], np.int32), np.array([1], np.int32)
    oc = S.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = S.BuiltinOperator.SOFTMAX, S.BuiltinOperator.SOFTMAX, 3
    m = S.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [oc], [sg], [S.BufferT()]
    tflite_file.write(m, dst)
    return str(dst)


def test_16x8_classifier_host_build_and_library_equal_tflm(classifier_16x8, mcu_models, tmp_path):
    """LSTM -> Dense -> int16 SOFTMAX: the numpy reference, the generated C (host build) and
    the library (whole, step, first-n) equal TFLite Micro on every window."""
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu import reference
    from firmware_sim.mcu.host import HostModel
    from firmware_sim.mcu.lower import lower
    from groundfloor import tflm
    prog = lower(classifier_16x8)
    assert prog.bits == 16 and prog.layers[-1].bits == 16
    lib = _lib(classifier_16x8, tmp_path / "cache")
    x = mcu_models["classifier"]["x_eval"]
    q = _windows(lib, x)
    want = tflm.run(classifier_16x8, q, reset_every=1)["outputs"][0].reshape(len(q), -1)
    got = HostModel(classifier_16x8, tmp_path / "host").predict_int8(q).reshape(len(q), -1)
    assert np.array_equal(got, want)
    ref = np.stack([reference.run(prog, w)[0].reshape(-1) for w in q])
    assert np.array_equal(ref, want)
    assert np.all(np.abs(want.sum(axis=1) - 32768) <= 8)          # probabilities in Q0.15
    assert len(np.unique(want.argmax(axis=1))) >= 2
    _check_all_equal(verify(classifier_16x8, q, cache_dir=tmp_path / "cache"), len(q))
    _check_all_equal(verify(classifier_16x8, q[:len(x)], x, cache_dir=tmp_path / "cache"), len(x))
    p = lib.run_f(x[0])
    assert p.shape == (1, 4) and abs(float(p.sum()) - 1.0) < 1e-3


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs gcc-arm-none-eabi and qemu-system-arm")
def test_16x8_classifier_emulated_on_m4(classifier_16x8, mcu_models, tmp_path):
    """The emulated bench runs the 16x8 classifier: QEMU (DSP kernels) equals the reference and
    TFLite Micro, and its library folder builds with the Makefile."""
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu import run_emulated
    from firmware_sim.mcu.bundle import write_library
    x = mcu_models["classifier"]["x_eval"][:3]
    r = run_emulated(classifier_16x8, x, {"flash_bytes": 256 * 1024, "sram_bytes": 64 * 1024,
                                          "clock_hz": 80_000_000},
                     workdir=tmp_path / "emu", plain_samples=1)
    assert r["status"] == "ok", r.get("error")
    assert r["reference_max_lsb_diff"] == 0 and r["tflm"]["max_lsb_diff"] == 0
    assert r["plain"]["outputs_identical"] and r["instructions_per_inference"] > 0
    out = tmp_path / "fw"
    write_library(classifier_16x8, out, name="classifier16")
    res = subprocess.run(["make", "-C", str(out)], capture_output=True, text=True)
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr


@ARM
@pytest.mark.skipif(not shutil.which("qemu-system-arm"), reason="needs qemu-system-arm")
def test_16x8_example_main_streams_in_qemu_like_the_host_build(mcu_models_16x8, tmp_path, cache):
    """The 16x8 library's DSP build (main.c on mps2-an386, SysTick delivering the samples) gives,
    step by step, the host build's (plain C) model_step_f outputs, float bit for float bit."""
    name = "stacked"
    samples = mcu_models_16x8[name]["x_eval"][:2].astype(np.float32).reshape(-1, 3)
    got, want = stream_example_in_qemu(mcu_models_16x8[name]["tflite"], name, samples,
                                       _lib(mcu_models_16x8[name]["tflite"], cache), tmp_path,
                                       sample_ticks=4000, step_output_macro="MODEL_STEP_OUTPUT_CODES")
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    assert len(np.unique(want)) > len(samples) // 2
