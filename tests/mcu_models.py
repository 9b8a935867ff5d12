"""Tiny int8 LSTMs for the firmware_sim.mcu tests (test_mcu.py: QEMU, test_mcu_host.py: the host
build), converted once in a child process (TensorFlow stays out of pytest) and cached in
pytest's cache directory keyed by the build script and the TensorFlow versions.

    from mcu_models import mcu_models  # noqa: F401   (fixture: {name: {"tflite", "x_eval"}})

with_unsupported_op() copies a model with an op the generator does not implement;
mcu_models_16x8: the 16x8 twins (int16 activations, int64 biases) of every model, the classifier's
softmax int16 too (NAMES_16X8: the ones the parametrized 16x8 tests run, the classifier has its own);
full_range_windows() and assert_host_build_equals_tflm(): the host-build check of test_mcu_host.py
(int8) and test_mcu_16x8.py (16x8); PROFILE: the emulated board budget the QEMU tests run under.

small: LSTM(8) on [8, 2] -> Dense(1); stacked: LSTM(32, return_sequences) -> LSTM(16) on
[12, 3] -> Dense(1); classifier: LSTM(8) on [10, 3] -> Dense(4, softmax); sequence: LSTM(6,
return_sequences) on [6, 1] (F = 1, the whole hidden sequence is the output); seqdense: LSTM(6,
return_sequences) -> Dense(2) on [5, 2] (a Dense on every row of the sequence); narrow: LSTM(8)
on [32, 4] -> Dense(1) (small model, per-element overhead dominates: the instruction budget).
x_eval: 40 float evaluation windows per model, drawn apart from the calibration windows.
"""
import hashlib
import json
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from child_build import filled_cache

NAMES = ("small", "stacked", "classifier", "sequence", "seqdense", "narrow")
N_EVAL = 40
PROFILE = {"flash_bytes": 256 * 1024, "sram_bytes": 64 * 1024, "clock_hz": 80_000_000}

MAKE_MODELS = textwrap.dedent("""
    import os, sys
    import numpy as np
    import tensorflow as tf
    import tf_keras as K
    out = sys.argv[2]

    def convert(model, X, name):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([X[i:i + 1]] for i in range(len(X)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with open(os.path.join(out, name + ".tflite"), "wb") as f:
            f.write(conv.convert())

    def make(name, shape, layers, loss, target):
        X = rng.normal(size=(64 + N_EVAL,) + shape).astype(np.float32)
        m = K.Sequential([K.layers.Input(shape, batch_size=1)] + layers)
        m.compile("adam", loss)
        m.fit(X[:64], target(X[:64]), epochs=1, verbose=0)
        convert(m, X[:64], name)
        np.savez(os.path.join(out, name + ".npz"), x_eval=X[64:])

    N_EVAL = int(sys.argv[1])
    rng = np.random.default_rng(0)
    K.utils.set_random_seed(0)  # Python, numpy and TF: unseeded initializers draw from Python random
    make("small", (8, 2), [K.layers.LSTM(8), K.layers.Dense(1)], "mse", lambda X: X[:, -1, :1])
    make("stacked", (12, 3), [K.layers.LSTM(32, return_sequences=True), K.layers.LSTM(16),
                              K.layers.Dense(1)], "mse", lambda X: X[:, -1, :1])
    make("classifier", (10, 3), [K.layers.LSTM(8), K.layers.Dense(4, activation="softmax")],
         "sparse_categorical_crossentropy", lambda X: (X[:, :, 0].mean(axis=1) > 0) + 2 * (X[:, -1, 1] > 0))
    make("sequence", (6, 1), [K.layers.LSTM(6, return_sequences=True)], "mse",
         lambda X: np.repeat(np.cumsum(X, axis=1) / 3, 6, axis=2))
    make("seqdense", (5, 2), [K.layers.LSTM(6, return_sequences=True), K.layers.Dense(2)], "mse",
         lambda X: np.cumsum(X, axis=1) / 3)
    make("narrow", (32, 4), [K.layers.LSTM(8), K.layers.Dense(1)], "mse", lambda X: X[:, -1, :1])
""")


def _cache_key():
    vers = [metadata.version(d) for d in ("tensorflow-cpu", "tf-keras")]
    return hashlib.sha256((MAKE_MODELS + json.dumps([vers, NAMES, N_EVAL])).encode()).hexdigest()[:16]


def _files(d: Path):
    return [d / f"{n}.{ext}" for n in NAMES for ext in ("tflite", "npz")]


@pytest.fixture(scope="session")
def mcu_models(request):
    """{name: {"tflite": path, "x_eval": float windows [N_EVAL, T, F]}} for NAMES."""
    cache = Path(request.config.cache.mkdir(f"mcu_models_{_cache_key()}"))
    filled_cache(cache, [f.name for f in _files(cache)], [sys.executable, "-c", MAKE_MODELS, str(N_EVAL)],
                 "firmware")
    out = {}
    for n in NAMES:
        with np.load(cache / f"{n}.npz") as d:
            out[n] = {"tflite": str(cache / f"{n}.tflite"), "x_eval": d["x_eval"]}
    return out


def with_unsupported_op(src, dst):
    """A copy of the .tflite at dst with its FULLY_CONNECTED ops relabelled SQUARE (an op the
    generator does not implement): the model it must refuse, naming SQUARE."""
    from groundfloor import tflite_file
    ops = tflite_file.schema().BuiltinOperator
    m = tflite_file.read(src)
    for oc in m.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == ops.FULLY_CONNECTED:
            oc.builtinCode = ops.SQUARE
            oc.deprecatedBuiltinCode = min(ops.SQUARE, 127)
    tflite_file.write(m, dst)
    return dst


NAMES_16X8 = tuple(n for n in NAMES if n != "classifier")   # the classifier has its own 16x8 tests


@pytest.fixture(scope="session")
def mcu_models_16x8(mcu_models, tmp_path_factory):
    """{name: {"tflite", "x_eval"}}: the 16x8 twins of every model (export.quant16x8, the biases
    from the int8 model: no TensorFlow), made once per session."""
    from export.quant16x8 import convert_16x8
    d = tmp_path_factory.mktemp("mcu_models_16x8")
    out = {}
    for n in NAMES:
        path = d / f"{n}_16x8.tflite"
        convert_16x8(mcu_models[n]["tflite"], out_path=str(path))
        out[n] = {"tflite": str(path), "x_eval": mcu_models[n]["x_eval"]}
    return out


def full_range_windows(q: np.ndarray, n_random: int, seed: int) -> np.ndarray:
    """The code windows q, then n_random random full-range windows of q's integer type and the two
    extremes (the saturating ends of every requantization)."""
    lo, hi = np.iinfo(q.dtype).min, np.iinfo(q.dtype).max
    shape = q.shape[1:]
    rnd = np.random.default_rng(seed).integers(lo, hi + 1, size=(n_random, *shape)).astype(q.dtype)
    ends = np.stack([np.full(shape, lo, q.dtype), np.full(shape, hi, q.dtype)])
    return np.concatenate([q, rnd, ends])


def assert_host_build_equals_tflm(path, model, q, dtype, reference_rows: slice) -> np.ndarray:
    """The host build `model` of the .tflite at path on the code windows q: `dtype` codes of the
    model's output shape, not a constant model, equal to TFLite Micro on every window and to the
    numpy integer reference on q[reference_rows] (the reference is slow). Returns the outputs."""
    pytest.importorskip("tflite_micro")
    from firmware_sim.mcu import reference
    from firmware_sim.mcu.lower import lower
    from groundfloor import tflm
    y = model.predict_int8(q)
    assert y.dtype == dtype and y.shape == (len(q), *model.output_shape[1:])
    assert len(np.unique(y.reshape(len(y), -1), axis=0)) > len(q) // 4    # not a constant model
    y_tflm = tflm.run(path, q, reset_every=1)["outputs"][0].reshape(y.shape)
    assert np.array_equal(y, y_tflm)
    prog = lower(path)
    y_ref = np.stack([reference.run(prog, w)[0].reshape(y.shape[1:]) for w in q[reference_rows]])
    assert np.array_equal(y[reference_rows], y_ref)
    return y
