"""The firmware_sim.mcu pieces that need no toolchain: I/O quantization, the fixed-point
activations, the op/layer registries, the arena placement, the C array layout, the firmware
output parsers, and the drift debugger's float emulation and error figures."""
import struct

import numpy as np
import pytest

from firmware_sim.mcu import arena, codegen, firmware, fixedpoint as fp, lower, reference, tflite_model
from firmware_sim.mcu.debug import figures, floatmodel, text
from firmware_sim.mcu.quant import dequantize, fake_quant, quantize, quantize_input
from groundfloor import ioquant
from groundfloor.errors import BadInput
from groundfloor.tflite_file import Graph, Tensor


def _graph(shape=(1, 4, 2), scale=0.05, zp=3):
    t = Tensor(0, "x", "INT8", shape, np.array([scale], np.float32), np.array([zp], np.int64))
    return Graph("m.tflite", [t], [], [0], [0])


# ---------------------------------------------------------------- quant
def test_quantize_rounds_half_to_even_and_clips_to_the_dtype():
    assert quantize([0.5, 1.5, 2.5, -0.5, -1.5], 1.0).tolist() == [0, 2, 2, 0, -2]
    assert quantize([1000.0, -1000.0], 0.1, 3).tolist() == [127, -128]
    assert quantize([1e9, -1e9], 1.0, 0, "int16").tolist() == [32767, -32768]
    assert quantize([0.26], 0.1, -5).dtype == np.int8 and quantize([0.26], 0.1, -5)[0] == -2


def test_quantize_is_ioquant_in_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000).astype(np.float32)
    s, zp = 0.0123, -7
    io = {"dtype": "int8", "scale": s, "zero_point": zp}
    assert np.array_equal(quantize(x, s, zp), ioquant.quantize_input(x.astype(np.float64), io))
    manual = np.clip(np.round(x.astype(np.float64) / s) + zp, -128, 127).astype(np.int8)
    assert np.array_equal(quantize(x, s, zp), manual)


def test_dequantize_and_fake_quant():
    y = dequantize(np.array([-128, 0, 3, 127], np.int8), 0.5, 3)
    assert y.dtype == np.float64 and y.tolist() == [-65.5, -1.5, 0.0, 62.0]
    rows = dequantize(np.array([[2, 2], [2, 2]]), np.array([[0.5], [0.25]]))    # per-row scales
    assert rows.tolist() == [[1.0, 1.0], [0.5, 0.5]]
    v = np.linspace(-1, 1, 101)
    fq = fake_quant(v, 0.05, 2)
    assert np.max(np.abs(fq - v)) <= 0.025 + 1e-12
    assert np.array_equal(fake_quant(fq, 0.05, 2), fq)
    assert np.allclose(fq / 0.05, np.round(fq / 0.05))


def test_quantize_input_shapes_checks_and_passes_codes_through():
    g = _graph()
    x = np.random.default_rng(1).normal(size=(3, 4, 2))
    q = quantize_input(g, x)
    assert q.shape == (3, 8) and q.dtype == np.int8
    assert np.array_equal(q, quantize(x, float(np.float32(0.05)), 3).reshape(3, 8))
    codes = np.arange(-4, 4, dtype=np.int8)
    assert np.array_equal(quantize_input(g, codes), codes.reshape(1, 8))
    assert np.array_equal(quantize_input(g, codes.astype(np.int32)), codes.reshape(1, 8))
    with pytest.raises(BadInput, match="multiple of the model input"):
        quantize_input(g, np.zeros((1, 3, 2)))
    with pytest.raises(BadInput, match="outside the int8 range"):
        quantize_input(g, np.full(8, 200, np.int32))


# ---------------------------------------------------------------- fixed point
def test_int16_activations_follow_the_float_functions():
    x = np.arange(-32768, 32768, 37)
    sig = fp.sigmoid_int16(x) / 32768.0
    th = fp.tanh_int16(x) / 32768.0
    ref = x / 4096.0
    assert np.max(np.abs(sig - 1 / (1 + np.exp(-ref)))) < 2e-4
    assert np.max(np.abs(th - np.tanh(ref))) < 5e-4
    assert np.all(np.diff(fp.sigmoid_int16(x)) >= 0) and np.all(np.diff(fp.tanh_int16(x)) >= 0)


def test_activation_table_is_a_parameter_not_a_global():
    x = np.arange(-3000, 3000, 11)
    saved = fp.SIGMOID_TABLE.copy()
    other = fp.SIGMOID_TABLE.copy()
    other[1:255] += 3
    assert not np.array_equal(fp.sigmoid_int16(x, table=other), fp.sigmoid_int16(x))
    assert not np.array_equal(fp.tanh_int16(x, table=other), fp.tanh_int16(x))
    assert np.array_equal(fp.SIGMOID_TABLE, saved)
    assert np.array_equal(fp.sigmoid_int16(x, table=saved), fp.sigmoid_int16(x))


# ---------------------------------------------------------------- registries
def test_every_supported_op_is_lowered_checked_run_and_generated():
    assert set(lower.LOWERINGS) == set(tflite_model.SUPPORTED_OPS)
    assert set(tflite_model.CHECKS) <= set(tflite_model.SUPPORTED_OPS)
    layer_types = {lower.LstmLayer, lower.FcLayer, lower.SoftmaxLayer, lower.CopyLayer}
    assert set(reference.RUN) == layer_types
    assert set(codegen.STEP_CODE) == set(arena.STEP_BUFFERS) == layer_types - {lower.LstmLayer}
    assert set(codegen.CONSTANTS) == layer_types - {lower.CopyLayer}


# ---------------------------------------------------------------- arena
def test_arena_placement_never_overlaps_live_buffers():
    rng = np.random.default_rng(3)
    for _ in range(20):
        bufs = {}
        for k in range(12):
            first = int(rng.integers(0, 6))
            bufs[f"b{k}"] = arena.Buffer(f"b{k}", int(rng.integers(1, 200)), first,
                                         first + int(rng.integers(0, 3)))
        size = arena._place(bufs)
        for a in bufs.values():
            assert a.offset % 4 == 0 and a.offset + a.size <= size
            for b in bufs.values():
                live_together = not (a.last < b.first or b.last < a.first)
                if a is not b and live_together:
                    assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
    # buffers never live at the same time share bytes
    two = {"a": arena.Buffer("a", 64, 0, 0), "b": arena.Buffer("b", 64, 1, 1)}
    assert arena._place(two) == 64 and two["a"].offset == two["b"].offset == 0


# ---------------------------------------------------------------- C layout
def test_c_arrays_and_the_simd_weight_layout():
    assert codegen._arr("int8_t", "w", [1, -2]) == "static const int8_t w[2] = {\n    1, -2\n};\n"
    assert codegen._arr("int8_t", "w", [1], aligned=True).startswith(
        "static const __attribute__((aligned(4))) int8_t w[1] = {")
    assert codegen._arr("uint16_t", "t", [], static=False) == "const uint16_t t[1] = {\n    0\n};\n"
    w = np.arange(40, dtype=np.int8).reshape(5, 8)          # padded to 8 x 8
    il = codegen.interleave(w, 8, 8)
    assert il.size == 64
    assert il[:8].tolist() == [0, 2, 1, 3, 8, 10, 9, 11]   # block (0, 0): rows 0, 1; columns 0 2 1 3
    assert il[16:20].tolist() == [4, 6, 5, 7]              # block (0, 1), row 0
    assert il[32 + 4:32 + 8].tolist() == [0, 0, 0, 0]      # row 5 is padding
    gates = np.arange(12).reshape(12, 1)                     # 4 gates x H = 3, gate order
    assert codegen._by_unit(gates, 3).ravel().tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_signed_activation_tables_reproduce_the_interpolated_table(kind):
    """The DSP kernels' tables: checked on every input inside signed_table; a table they cannot
    reproduce is refused, not written."""
    B, D, q0 = fp.signed_table(kind)
    fb, shift, (lo, hi) = fp.SIGNED_TABLES[kind]
    assert len(B) == len(D) == 2 * q0 and q0 == -(lo >> fb)
    v = np.array([lo, -1, 0, 1, 12345, hi])
    want = (fp.sigmoid_of_input if kind == "sigmoid" else fp.tanh_of_input)(v)
    assert np.array_equal(fp.wrap32(B[(v >> fb) + q0] + v * D[(v >> fb) + q0]) >> shift, want)
    bent = fp.SIGMOID_TABLE.copy()
    bent[100] += 1                     # any uint16 table: the rewrite is exact, not fitted
    fp.signed_table(kind, bent)
    with pytest.raises(ValueError, match="does not reproduce"):
        fp.signed_table(kind, np.full(256, 70000))   # out of the uint16 range: D no longer int16-exact


def test_nested_symbols_split_the_enclosing_function():
    from firmware_sim.mcu.toolchain import _innermost
    syms = [("step", 0, 100), ("mcu_mac_gate_1", 10, 30), ("mcu_mac_gate_2", 50, 60), ("fc", 100, 120)]
    assert _innermost(syms) == [("step", 0, 10), ("mcu_mac_gate_1", 10, 30), ("step", 30, 50),
                                ("mcu_mac_gate_2", 50, 60), ("step", 60, 100), ("fc", 100, 120)]


# ---------------------------------------------------------------- firmware output
def _out_file(path, ys, ticks, stack, magic=0x3055434D):
    n, ob = ys.shape
    data = struct.pack("<4I", magic, n, 8, ob)
    for y, t, s in zip(ys, ticks, stack):
        data += y.astype(np.int8).tobytes() + bytes((-ob) % 4) + struct.pack("<2I", t, s)
    path.write_bytes(data)


def test_firmware_output_and_counter_files(tmp_path):
    ys = np.array([[1, -2, 3], [-4, 5, -6]], np.int8)
    _out_file(tmp_path / "out.bin", ys, [100, 120], [512, 520])
    got, ticks, stack = firmware._parse_out(tmp_path / "out.bin", 2, 3)
    assert np.array_equal(got, ys) and ticks == [100, 120] and stack == [512, 520]
    with pytest.raises(RuntimeError, match="header"):
        firmware._parse_out(tmp_path / "out.bin", 3, 3)
    _out_file(tmp_path / "bad.bin", ys, [1, 2], [3, 4], magic=1)
    with pytest.raises(RuntimeError, match="header"):
        firmware._parse_out(tmp_path / "bad.bin", 2, 3)
    syms = [("main", 0, 10), ("mcu_matvec_gates", 10, 20), ("mcu_sigmoid_s16", 20, 30)]
    (tmp_path / "counts.txt").write_text("buckets 3\nsnap 100 5 0 0 1\nsnap 190 10 60 20 1\n"
                                         "snap 300 12 60 20 1\nsnap 420 20 150 40 2\nfinal 430 21 150 40 2\n")
    per = firmware._parse_counts(tmp_path / "counts.txt", syms)
    assert per == [{"main": 5, "mcu_matvec_gates": 60, "mcu_sigmoid_s16": 20},
                   {"main": 8, "mcu_matvec_gates": 90, "mcu_sigmoid_s16": 20, "(other)": 1}]
    split = syms[:1] + [("step", 10, 20), ("step", 20, 30)]    # one function in two pieces
    assert firmware._parse_counts(tmp_path / "counts.txt", split)[0] == {"main": 5, "step": 80}
    run = {"per_function": per, "ticks": [3, 4], "outputs": ys, "stack": [1, 1]}
    assert firmware.inference_instructions(run, 2) == (80 + 111) / 2     # harness (main) excluded

    class _Prog:
        layers = []
    s = firmware.summarize_counts(run, _Prog())
    assert s["per_inference"] == 95.5 and s["per_inference_min"] == 80 and s["per_inference_max"] == 111
    assert s["split"] == {"matrix": 75.0, "activations": 20.0, "lstm_rest": 0.0, "other_layers": 0.5}
    run["per_function"] = None
    assert firmware.inference_instructions(run, 2) == 3.5 * firmware.TICK_INSTRUCTIONS
    assert firmware.summarize_counts(run, _Prog())["counter"].startswith("systick")


# ---------------------------------------------------------------- the debugger's figures
def test_debug_figures():
    y = np.linspace(-1, 1, 30).reshape(10, 3)
    labels = np.arange(10.0).reshape(10, 1)
    assert figures.rmse(y, labels) == pytest.approx(np.sqrt(np.mean((y - labels) ** 2)), rel=1e-15)
    d_rmse, d_max, d_mean = figures.drift(y + 0.1, y)
    assert d_mean == pytest.approx(0.1) and d_rmse == pytest.approx(0.1) and d_max == pytest.approx(0.1)
    assert figures.drift(y - 0.1, y)[2] == pytest.approx(-0.1)
    assert figures.error_rmse_max(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == (pytest.approx(np.sqrt(0.125)), 0.5)
    with np.errstate(invalid="ignore"):
        assert np.isnan(figures.rmse(np.array([np.inf]), np.array([0.0])))   # undefined: NaN


# ---------------------------------------------------------------- the float emulation
F, U, STEPS = 2, 3, 5


def _chain():
    rng = np.random.default_rng(4)
    K, R, b = rng.normal(0, 0.5, (F, 4 * U)), rng.normal(0, 0.5, (U, 4 * U)), rng.normal(0, 0.1, 4 * U)
    Kd, bd = rng.normal(0, 0.5, (U, 1)), np.array([0.05])
    lstm = {"kind": "lstm", "name": "l", "kernel": K, "recurrent": R, "bias": b, "units": U,
            "return_sequences": False,
            "q": {"in": (0.02, 1), "h": (1 / 128, 0), "c": 2.0 ** -11,
                  "kernel": fake_quant(K, np.abs(K).max() / 127), "recurrent": fake_quant(R, np.abs(R).max() / 127)}}
    dense = {"kind": "dense", "name": "d", "kernel": Kd, "bias": bd, "activation": "linear",
             "q": {"kernel": fake_quant(Kd, np.abs(Kd).max() / 127), "out": (0.01, -3), "post": None}}
    return [lstm, dense]


def _keras_lstm(chain, x):
    """The textbook LSTM + Dense, written independently of the emulation."""
    lstm, dense = chain
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h = np.zeros((len(x), U))
    c = np.zeros((len(x), U))
    for t in range(x.shape[1]):
        z = x[:, t] @ lstm["kernel"] + h @ lstm["recurrent"] + lstm["bias"]
        i, f, g, o = sig(z[:, :U]), sig(z[:, U:2 * U]), np.tanh(z[:, 2 * U:3 * U]), sig(z[:, 3 * U:])
        c = f * c + i * g
        h = o * np.tanh(c)
    return h @ dense["kernel"] + dense["bias"]


def test_float_emulation_with_quantization_points():
    chain = _chain()
    x = np.random.default_rng(5).uniform(-1, 1, (7, STEPS, F))
    y = floatmodel.emulate(chain, x)
    assert np.allclose(y, _keras_lstm(chain, x), atol=1e-12)
    points = floatmodel.quant_points(chain)
    assert len(points) == 1 + 4 + 4 + 2 + 2 and points[0] == "input" and "l.gate_f" in points
    # the input point is the input rounded to its int8 grid
    assert np.allclose(floatmodel.emulate(chain, x, frozenset(["input"])),
                       floatmodel.emulate(chain, fake_quant(x, 0.02, 1)), atol=1e-15)
    # the output point puts the output on the int8 output grid
    yo = floatmodel.emulate(chain, x, frozenset(["d.output"]))
    assert np.allclose(np.round(yo / 0.01) * 0.01, yo, rtol=0, atol=1e-12)
    assert np.max(np.abs(yo - y)) <= 0.005 + 1e-12
    y_all = floatmodel.emulate(chain, x, frozenset(points))
    assert 0 < np.max(np.abs(y_all - y)) < 0.1
    for p in points:
        assert not np.array_equal(floatmodel.emulate(chain, x, frozenset([p])), y), p
    _, cap = floatmodel.emulate(chain, x, capture=True)
    assert set(cap["l"]) == set("ifgoch") and cap["l"]["h"].shape == (7, STEPS, U)
    assert np.allclose(cap["l"]["h"][:, -1] @ chain[1]["kernel"] + chain[1]["bias"], y)


def test_report_text_names_the_largest_source():
    rep = {"int8": "m.tflite", "samples": 4, "notes": ["n1"],
           "runtime": {"drift_rmse": 0.1, "drift_max": 0.3, "drift_mean": -0.01},
           "clipping": {"rows": [], "clipping": []},
           "attribution": [{"point": "a", "share_alone": 0.2, "drift_alone": 0.01, "removed_if_kept_float": 0.1},
                           {"point": "b", "share_alone": 0.7, "drift_alone": 0.05, "removed_if_kept_float": 0.6}]}
    rep["verdict"] = text.verdict(rep)
    assert rep["verdict"] == ["largest single source of drift: b (alone 0.05, 70% of the emulated drift; "
                              "keeping it float removes 60%)"]
    out = text.format_report(rep)
    assert out.splitlines()[1] == "runtime drift vs float: RMSE 0.1, max 0.3, mean -0.01 (LiteRT)"
    assert "note: n1" in out and out.endswith("* " + rep["verdict"][0])
