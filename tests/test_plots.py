"""edge/plots.py: every figure renders to a decodable PNG of its stated size, draws its data (the
series colours are in the pixels, other data gives other bytes, the same data the same bytes),
and returns None when the data for it is absent."""
import io
from functools import partial

import numpy as np
import pytest
from PIL import Image

from edge import plots

FOOT = "bench reports/tiny/bench.json sha256 " + "ab" * 32 + " | tools numpy 2.4.6 | machine Test CPU x2"


def _stats(p50):
    return {"kind": "measured", "unit": "us", "per": "invoke", "n": 24, "p50": p50, "p90": p50 * 1.1,
            "p99": p50 * 4, "mean": p50 * 1.3, "std": p50 * 0.5, "min": p50 * 0.98, "max": p50 * 8}


def _long_stream(n=8, scale=1.0):
    return {"steps": 100 * n, "window": 100, "int16_cell_range": [8.0],
            "per_window": {"start": [100 * i for i in range(n)],
                           "litert_rmse": [scale * (0.1 + 0.01 * i) for i in range(n)],
                           "tflm_rmse": [scale * (0.11 + 0.01 * i) for i in range(n)],
                           "float_max_abs_c": [2.0 + 0.3 * i for i in range(n)],
                           "int8_max_abs_c": [1.9 + 0.3 * i for i in range(n)],
                           "int8_cell_at_limit_fraction": [0.0] * (n - 1) + [0.01]}}


ARTS = ["tflite_float32", "tflite_int8", "onnx_dynamic_int8"]
DEVS = ["cortex_m4f", "cortex_m7"]


def _line(need, budget):
    return {"need": need, "budget": budget, "kind": "estimated"}


# name: (function, args with data, args without data (footer last), (width, height) in inches)
CASES = {
    "latency_distribution": (
        plots.latency_distribution,
        ([{"label": "tflite_int8 / litert", "stats": _stats(427.0), "samples": None},
          {"label": "tflite_int8 / tflm", "stats": _stats(250.0), "samples": None},
          {"label": "onnx / onnxruntime", "stats": _stats(31.0), "samples": list(np.linspace(28, 60, 24))}], FOOT),
        ([{"label": "x", "stats": {"p50": None}, "samples": None}], FOOT),
        (11, 1.2 + 0.42 * 3 + 1.0)),
    "device_latency": (
        plots.device_latency,
        (ARTS, DEVS, {(a, d): {"estimated": 1000.0 * (i + 1) * (j + 1), "emulated": 1500.0 if i == 1 else None}
                      for i, a in enumerate(ARTS) for j, d in enumerate(DEVS)}, FOOT),
        (ARTS, DEVS, {(a, d): {"estimated": None, "emulated": None} for a in ARTS for d in DEVS}, FOOT),
        (11, 1.8 + 0.55 * 3)),
    "drift_per_step": (
        plots.drift_per_step,
        ([{"label": "tflite_int8 / litert", "values": [0.1, 0.12, None, 0.15, 0.2, 0.22]}], FOOT),
        ([{"label": "tflite_int8 / litert", "values": []}], FOOT),
        (11, 4.2)),
    "stream_drift": (
        plots.stream_drift,
        ({"seattle": _long_stream()}, FOOT),
        ({"seattle": {"per_window": {"start": [0], "litert_rmse": []}}}, FOOT),
        (11, 4.2)),
    "memory_vs_budget": (
        plots.memory_vs_budget,
        (ARTS, DEVS, {(a, d): {"flash": _line(20000 + 1000 * i, 1 << 20), "ram": _line(7000 * (i + 1), 262144)}
                      for i, a in enumerate(ARTS) for d in DEVS}, FOOT),
        (ARTS, DEVS, {(a, d): {"flash": None, "ram": None} for a in ARTS for d in DEVS}, FOOT),
        (11, 1.8 + 0.3 * 3 * 2 / 2)),
    "accuracy_vs_size": (
        partial(plots.accuracy_vs_size, higher_is_better=False),
        ([{"label": "tflite_float32", "bytes": 20616, "value": 0.5888, "quantized": False},
          {"label": "tflite_int8", "bytes": 8944, "value": 0.6471, "quantized": True}], "rmse", 0.5888, FOOT),
        ([{"label": "tflite_int8", "bytes": None, "value": 0.6, "quantized": True}], "rmse", 0.5888, FOOT),
        (8, 5)),
    "cell_state_range": (
        plots.cell_state_range,
        ({"seattle": _long_stream()}, FOOT),
        ({"seattle": {"per_window": {"litert_rmse": [0.1]}}}, FOOT),
        (11, 4.2)),
    "emulated_instructions": (
        plots.emulated_instructions,
        ([{"label": "tflite_int8 @ cortex_m4f (cortex-m4f)",
           "split": {"matrix": 2376.0, "activations": 3419.8, "lstm_rest": 6992.0, "other_layers": 330.8},
           "plain": 32829.75}], FOOT),
        ([{"label": "tflite_int8 @ cortex_m4f", "split": None, "plain": 1000}], FOOT),
        (11, 1.6 + 0.45 * 1)),
}


def _rgb(hex_colour):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _decode(png: bytes) -> np.ndarray:
    assert isinstance(png, bytes) and png[:8] == b"\x89PNG\r\n\x1a\n"
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG"
    im.load()                                    # the whole stream decodes, not only the header
    return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_renders_a_png_of_its_size(name):
    fn, args, _, (w, h) = CASES[name]
    pixels = _decode(fn(*args))
    assert pixels.shape == (round(h * plots.DPI), round(w * plots.DPI), 3)
    assert pixels.std() > 10                     # not a blank canvas
    colours = {tuple(c) for c in pixels.reshape(-1, 3)[::3]}
    assert _rgb(plots.PALETTE[0]) in colours     # the first series is drawn in the first colour


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_data_gives_none(name):
    fn, _, empty, _ = CASES[name]
    assert fn(*empty) is None


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_data_same_bytes_other_footer_other_bytes(name):
    fn, args, _, _ = CASES[name]
    assert fn(*args) == fn(*args)               # reports are reproducible
    assert fn(*args[:-1], FOOT + " | manifest m.json") != fn(*args)  # the footer is drawn


def test_other_data_other_picture():
    a = plots.stream_drift({"s": _long_stream(scale=1.0)}, FOOT)
    b = plots.stream_drift({"s": _long_stream(scale=3.0)}, FOOT)
    assert a != b
    # two devices: the second device's colour appears only when it is there
    fn, args, _, _ = CASES["device_latency"]
    two = {tuple(c) for c in _decode(fn(*args)).reshape(-1, 3)}
    one = {tuple(c) for c in _decode(fn(ARTS, DEVS[:1], args[2], FOOT)).reshape(-1, 3)}
    assert _rgb(plots.PALETTE[1]) in two and _rgb(plots.PALETTE[1]) not in one


def test_emulated_instructions_draws_every_kernel_part():
    fn, args, _, _ = CASES["emulated_instructions"]
    colours = {tuple(c) for c in _decode(fn(*args)).reshape(-1, 3)}
    assert all(_rgb(plots.PALETTE[k]) in colours for k in range(4))   # matrix, activations, cell, other


def test_taller_with_more_rows():
    fn, args, _, _ = CASES["latency_distribution"]
    h3 = _decode(fn(*args)).shape[0]
    h1 = _decode(fn(args[0][:1], FOOT)).shape[0]
    assert h3 - h1 == round(0.42 * 2 * plots.DPI)
