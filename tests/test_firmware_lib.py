"""The firmware library of `edge firmware` (firmware_sim.mcu.library / libhost / bundle): its host
build equals TFLite Micro code for code on every window (whole window, every step of the
streaming twin, the first n steps), stepping equals the whole window, the float calls equal
numpy's quantization, bad arguments return the error codes (no undefined behaviour), refused
models write nothing, and the shipped Makefile / CMake files build with arm-none-eabi-gcc."""
import json
import shutil
import textwrap

import numpy as np
import pytest

from firmware_sim.mcu.libhost import LibraryHost, spread_lengths, stream_at, verify
from firmware_sim.mcu.quant import dequantize, quantize
from groundfloor import tflite_file
from groundfloor.errors import BadInput
from library_checks import (ARM, LENGTH, LIBRARY_API, NEEDS_CC, NOT_INIT, NULL, OK, VALUE,  # noqa: F401
                            build_folder_as_shipped, code_windows, host_library, run_bad_calls,
                            stream_example_in_qemu)
from library_checks import cache  # noqa: F401  (the fixture)
from mcu_models import NAMES, mcu_models, with_unsupported_op  # noqa: F401

pytestmark = NEEDS_CC


def _lib(mcu_models, name, cache) -> LibraryHost:
    return host_library(mcu_models[name]["tflite"], cache)


def _windows(lib, x_eval) -> np.ndarray:
    return code_windows(lib, x_eval, 16)


@pytest.mark.parametrize("name", NAMES)
def test_whole_step_and_first_n_equal_tflm_on_every_window(mcu_models, cache, name):
    pytest.importorskip("tflite_micro")
    lib = _lib(mcu_models, name, cache)
    q = _windows(lib, mcu_models[name]["x_eval"])
    r = verify(mcu_models[name]["tflite"], q, cache_dir=cache)
    assert r["status"] == "ok", r
    checks = r["checks"]
    T = lib.T
    want = {"whole_vs_tflm", "step_vs_tflm_stream", "step_T_vs_whole", "first_n_vs_step"} | {
        f"first_{n}_vs_tflm_{n}_steps" for n in {1, T // 2, T - 1}}
    assert want <= set(checks)
    for c in checks.values():
        assert c["windows"] == len(q) and c["windows_equal"] == len(q) and c["max_lsb_diff"] == 0
    # the outputs are not constant: the equalities above say something
    y = lib.windows(q)
    assert len(np.unique(y.reshape(len(y), -1), axis=0)) > len(q) // 4


@pytest.mark.parametrize("name", NAMES)
def test_state_carries_between_calls(mcu_models, cache, name):
    lib = _lib(mcu_models, name, cache)
    q = _windows(lib, mcu_models[name]["x_eval"])[:6]
    stream = lib.stream(q)
    whole = lib.windows(q)
    if lib.sequence:
        assert np.array_equal(stream, whole)                # one output row per step
    else:
        assert np.array_equal(stream[:, -1], whole[:, 0])   # the output after T samples
    ns = spread_lengths(len(q), lib.T)
    assert np.array_equal(lib.first_n(q, ns), stream_at(stream, ns, lib.sequence))
    w, n = q[0], max(1, lib.T // 2)
    lib.run_steps(w, n)                                     # leaves the state after step n
    assert np.array_equal(np.stack([lib.step(w[t]) for t in range(n, lib.T)]), stream[0, n:])
    lib.reset()                                             # starts the sequence over
    assert np.array_equal(lib.step(w[0]), stream[0, 0])
    assert not np.array_equal(stream[0, 0], stream[0, -1]) or lib.T == 1


@pytest.mark.parametrize("name", ["classifier", "sequence"])
def test_float_calls_equal_numpy_quantization(mcu_models, cache, name):
    lib = _lib(mcu_models, name, cache)
    info = lib.info
    sc, zp = info["input_scale"], info["input_zero_point"]

    def deq(codes):      # what the float calls must return: numpy's dequantization, as float32
        return dequantize(codes, info["output_scale"], info["output_zero_point"]).astype(np.float32)

    x = mcu_models[name]["x_eval"].astype(np.float32)
    ties = ((np.arange(-140, 140) + 0.5) * np.float32(sc)).astype(np.float32)   # halfway cases
    odd = np.array([0.0, -0.0, np.inf, -np.inf, 1e30, -1e30, np.float32(sc) * 0.5], np.float32)
    for v in (x.reshape(-1), ties, odd):
        assert np.array_equal(lib.quantize(v), quantize(v.astype(np.float64), sc, zp))
    codes = np.arange(-128, 128)
    assert np.array_equal(lib.dequantize(codes).view(np.int32), deq(codes).view(np.int32))
    q = quantize(x, sc, zp)
    n = max(1, lib.T // 2)
    for w, qw in zip(x[:8], q[:8]):
        assert np.array_equal(lib.run_f(w).view(np.int32), deq(lib.run(qw)).view(np.int32))
        assert np.array_equal(lib.run_steps_f(w, n).view(np.int32),
                              deq(lib.run_steps(qw, n)).view(np.int32))
    stream = lib.stream(q[:1])[0]
    lib.reset()
    got = np.stack([lib.step_f(s) for s in x[0]])
    assert np.array_equal(got.view(np.int32), deq(stream).view(np.int32))
    # a NaN is refused and changes nothing: the next step is the first step of the sequence
    lib.reset()
    sample, window = x[0, 0].copy(), x[0].copy()
    sample[0] = window[-1, 0] = np.nan
    assert lib.call("model_step_f", sample, np.zeros(lib.row, np.float32)) == VALUE
    assert lib.call("model_run_f", window, np.zeros((lib.T, lib.row), np.float32)) == VALUE
    assert np.array_equal(lib.step_f(x[0, 0]), got[0])


BAD_CALLS = textwrap.dedent("""
    T, F, row = lib.T, lib.F, lib.row
    x, xf = np.zeros((T, F), np.int8), np.zeros((T, F), np.float32)
    y, yf = np.full((T + 1, row), 77, np.int8), np.zeros((T + 1, row), np.float32)
    out = {"before_init": [lib.call(n, *a) for n, a in (
        ("model_reset", ()), ("model_run", (x, y)), ("model_run_steps", (x, 1, y)),
        ("model_step", (x, y)), ("model_run_f", (xf, yf)), ("model_run_steps_f", (xf, 2, yf)),
        ("model_step_f", (xf, yf)))]}
    out["convert_before_init"] = [lib.call("model_quantize", xf, x, F), lib.call("model_dequantize", x, yf, F)]
    out["null_before_init"] = lib.call("model_run", None, y)
    out["init"] = lib.call("model_init")
    out["null"] = [lib.call(n, *a) for n, a in (
        ("model_run", (None, y)), ("model_run", (x, None)), ("model_run_steps", (None, 1, y)),
        ("model_step", (x, None)), ("model_run_f", (None, yf)), ("model_step_f", (xf, None)),
        ("model_run_steps_f", (xf, 1, None)), ("model_quantize", (None, x, 1)),
        ("model_dequantize", (x, None, 1)))]
    out["length"] = [lib.call("model_run_steps", x, n, y) for n in (0, -1, T + 1, -2**31, 2**31 - 1)]
    out["length"] += [lib.call("model_run_steps_f", xf, n, yf) for n in (0, T + 1)]
    out["length"] += [lib.call("model_quantize", xf, x, 0), lib.call("model_dequantize", x, yf, -5)]
    out["untouched"] = bool((y == 77).all())
    out["ok"] = [lib.call("model_run", x, y), lib.call("model_run_steps", x, T, y),
                 lib.call("model_step", x, y), lib.call("model_run_f", xf, yf)]
    print(json.dumps(out))
""")


@pytest.mark.parametrize("name", ["small", "sequence"])
def test_bad_arguments_return_codes_without_undefined_behaviour(mcu_models, tmp_path, name):
    out = run_bad_calls(mcu_models[name]["tflite"], tmp_path, BAD_CALLS)
    assert out["before_init"] == [NOT_INIT] * 7
    assert out["convert_before_init"] == [OK, OK]
    assert out["null_before_init"] == NULL          # argument checks come first
    assert out["init"] == OK
    assert out["null"] == [NULL] * 9
    assert out["length"] == [LENGTH] * 9
    assert out["untouched"]                         # refused calls wrote nothing
    assert out["ok"] == [OK] * 4


def _retyped_input(src, dst):
    """The model with int16 activations at its input only (a 16x8 input, an int8 output)."""
    m = tflite_file.read(src)
    sg = m.subgraphs[0]
    sg.tensors[sg.inputs[0]].type = tflite_file.schema().TensorType.INT16
    tflite_file.write(m, dst)
    return dst


def _first_step_slice(src, dst):
    """The model reading the first time step instead of the last."""
    m = tflite_file.read(src)
    sg = m.subgraphs[0]
    op = next(op for op in sg.operators if tflite_file.op_name(m, op) == "STRIDED_SLICE")
    begin = sg.tensors[op.inputs[1]]
    data = tflite_file.tensor_data(m, begin).copy()
    data[1] = 0
    tflite_file.set_tensor_data(m, begin, data)
    tflite_file.write(m, dst)
    return dst


def test_refused_models_name_the_op_and_write_nothing(mcu_models, tmp_path):
    from firmware_sim.mcu.bundle import write_library
    src = mcu_models["small"]["tflite"]
    cases = [(with_unsupported_op(src, tmp_path / "square.tflite"), "SQUARE"),
             (_retyped_input(src, tmp_path / "int16.tflite"),      # neither int8 nor 16x8
              r"16x8 model input .* has zero point -?\d+; int16 activations must be symmetric"),
             (_first_step_slice(src, tmp_path / "first.tflite"),
              r"STRIDED_SLICE op #1: a slice other than the last time step")]
    for path, match in cases:
        out = tmp_path / "out" / path.stem
        with pytest.raises(BadInput, match=match) as e:
            write_library(path, out, name=path.stem)
        assert "\n" not in str(e.value)
        assert not (tmp_path / "out").exists()      # not even the parent or a temporary folder


def _folder(mcu_models, name, out, cache=None):
    from firmware_sim.mcu.bundle import write_library
    lib = LibraryHost(mcu_models[name]["tflite"], cache)
    q = _windows(lib, mcu_models[name]["x_eval"])[:12]
    return write_library(mcu_models[name]["tflite"], out, name=name, windows=(q, None, "test windows"))


@ARM
def test_library_folder_sizes_readme_and_atomic_replace(mcu_models, tmp_path, cache):
    pytest.importorskip("tflite_micro")
    out = tmp_path / "fw"
    r = _folder(mcu_models, "stacked", out, cache)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"model.h", "model.c", "mcu_kernels.h", "mcu_dsp.h", "mcu_kernels.c", "main.c",
                     "Makefile", "CMakeLists.txt", "cmake/arm-none-eabi.cmake", "README.md", "model.json"}
    sizes = r["sizes"]
    assert sizes["status"] == "ok" and set(sizes["cores"]) == {"cortex-m4", "cortex-m7", "cortex-m3", "cortex-m0"}
    m4, m0 = sizes["cores"]["cortex-m4"], sizes["cores"]["cortex-m0"]
    assert m4["kernels"].startswith("DSP") and m0["kernels"] == "plain C"
    weights = 4 * 32 * (3 + 32) + 4 * 16 * (32 + 16)          # int8 gate weights of both LSTMs
    assert m0["const_bytes"] >= weights and m4["const_bytes"] >= weights
    assert m4["bss_bytes"] >= r["library"]["arena_bytes"] and m4["stack_bytes"] > 0
    assert m4["flash_bytes"] == m4["code_bytes"] + m4["const_bytes"] + m4["data_bytes"]
    assert r["verification"]["status"] == "ok"
    readme = (out / "README.md").read_text()
    assert f"**{m4['flash_bytes']:,} B**" in readme and f"**{m4['static_ram_bytes']:,} B**" in readme
    for call in ("model_init", "model_reset", "model_run", "model_run_steps", "model_step",
                 "model_step_f", "interrupt"):
        assert call in readme
    assert json.loads((out / "model.json").read_text())["generator"] == "lstm-edge edge firmware"
    # a second build replaces the folder as a whole; nothing is left beside it
    (out / "stale.txt").write_text("old")
    _folder(mcu_models, "small", out, cache)
    assert not (out / "stale.txt").exists() and "small" in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]
    # a folder that is not ours is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(BadInput, match="not an `edge firmware` folder"):
        _folder(mcu_models, "small", mine, cache)
    assert (mine / "keep.txt").read_text() == "x"


@ARM
def test_shipped_makefile_and_cmake_build_as_given(mcu_models, tmp_path, cache):
    from firmware_sim.mcu.bundle import write_library
    out = tmp_path / "fw"
    write_library(mcu_models["classifier"]["tflite"], out, name="classifier")
    syms = build_folder_as_shipped(out)
    assert LIBRARY_API <= syms["build"] and "mcu_act_tab" in syms["build"]   # Cortex-M4: the DSP kernels' tables
    m0 = syms["build-m0"]
    assert LIBRARY_API <= m0 and "mcu_matvec_plain" in m0 and "mcu_act_tab" not in m0
    if "cbuild" not in syms:
        pytest.skip("cmake not installed")
    assert LIBRARY_API <= syms["cbuild"]


@ARM
def test_cli_builds_refuses_and_checks_the_device(mcu_models, tmp_path, capsys):
    pytest.importorskip("tflite_micro")
    import edge.cli
    path = mcu_models["small"]["tflite"]
    assert edge.cli.main(["firmware", path, "--out", str(tmp_path / "fw"), "--max-samples", "8"]) == 0
    assert "verified on 8 random int8 windows: ok" in capsys.readouterr().out
    assert (tmp_path / "fw" / "model.c").is_file()
    bad = with_unsupported_op(path, tmp_path / "bad.tflite")
    assert edge.cli.main(["firmware", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "SQUARE" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    from firmware_sim.profiles import PROFILE_DIR
    tiny = (PROFILE_DIR / "cortex_m4f.toml").read_text()
    tiny = "\n".join("flash_bytes = 4096" if l.startswith("flash_bytes") else l for l in tiny.splitlines())
    (tmp_path / "tiny.toml").write_text(tiny)
    assert edge.cli.main(["firmware", path, "--out", str(tmp_path / "small"),
                          "--device", str(tmp_path / "tiny.toml")]) == 1
    assert "flash needs" in capsys.readouterr().err and not (tmp_path / "small").exists()


@ARM
def test_cli_default_output_from_an_artifacts_folder(mcu_models, tmp_path, monkeypatch, capsys):
    pytest.importorskip("tflite_micro")
    import edge.cli
    art = tmp_path / "artifacts" / "tiny"
    art.mkdir(parents=True)
    shutil.copyfile(mcu_models["classifier"]["tflite"], art / "model_int8.tflite")
    (art / "manifest.json").write_text(json.dumps(
        {"model": "tiny", "artifacts": {"tflite_int8": {"file": "model_int8.tflite", "status": "ok"}}}))
    np.savez(art / "data.npz", x_eval=mcu_models["classifier"]["x_eval"])
    monkeypatch.chdir(tmp_path)
    assert edge.cli.main(["firmware", "tiny"]) == 0
    assert "verified on 40 evaluation windows (data.npz): ok" in capsys.readouterr().out
    assert (tmp_path / "reports" / "tiny" / "firmware" / "model.h").is_file()
    assert edge.cli.main(["firmware", "tiny", "--artifact", "budgeted"]) == 2
    assert "no built artifact 'budgeted'" in capsys.readouterr().err


@ARM
@pytest.mark.skipif(not shutil.which("qemu-system-arm"), reason="needs qemu-system-arm")
def test_example_main_streams_in_qemu_like_the_host_build(mcu_models, tmp_path, cache):
    """main.c linked for mps2-an386 (DSP kernels) with SysTick interrupts delivering the samples
    gives, step by step, the host build's (plain-C kernels) model_step_f outputs."""
    name = "stacked"
    x = mcu_models[name]["x_eval"][:2].astype(np.float32)
    samples = x.reshape(-1, x.shape[-1])
    got, want = stream_example_in_qemu(mcu_models[name]["tflite"], name, samples, _lib(mcu_models, name, cache),
                                       tmp_path, sample_ticks=2000)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
