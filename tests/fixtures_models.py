"""Shared fixtures for the firmware_sim tests: a tiny tf-keras LSTM converted to float and int8
TFLite, a float streaming twin (one step per call) and float ONNX, plus a fake artifacts dir
whose manifest follows docs/CONTRACTS.md.

The models are built once in a child Python process and cached (tests/child_build.py), so
reruns take no conversion time. Import the fixtures in a test module with
    from fixtures_models import tiny_models, tiny_artifacts  # noqa: F401
bench_dir() and timed_bench() set up and time the module-scoped benches of test_bench*.py.
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from child_build import built_in_child, filled_cache
from tiny_keras import tiny_lstm

T, F, UNITS, N_EVAL, N_CALIB = 8, 2, 4, 24, 256
FILES = ["float32.tflite", "int8.tflite", "stream_float32.tflite", "float32.onnx", "data.npz"]


def build(out: Path):
    """Build the models into out (in a child process: child_build.built_in_child)."""
    import tensorflow as tf
    from export.tflite import representative_windows, set_full_int8
    model = tiny_lstm(T, F, UNITS)
    # a strong forget-gate bias keeps the cell state alive, so state carried over from the
    # previous sequence (no reset) visibly changes the outputs
    kernel, recurrent, bias = model.layers[0].get_weights()
    bias[UNITS:2 * UNITS] = 3.0
    model.layers[0].set_weights([kernel, recurrent, bias])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_CALIB + N_EVAL, T, F)).astype(np.float32)
    y_float = model.predict(x, batch_size=1, verbose=0).astype(np.float32)
    stream = tiny_lstm(1, F, UNITS)  # the same cell, fed one step per call
    stream.set_weights(model.get_weights())

    def tflite(m, int8=False):
        c = tf.lite.TFLiteConverter.from_keras_model(m)
        if int8:
            set_full_int8(c, representative_windows(x[:N_CALIB]))
        return c.convert()

    (out / "float32.tflite").write_bytes(tflite(model))
    (out / "int8.tflite").write_bytes(tflite(model, int8=True))
    (out / "stream_float32.tflite").write_bytes(tflite(stream))
    import tf2onnx
    spec = (tf.TensorSpec((1, T, F), tf.float32, name="x"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=str(out / "float32.onnx"))
    y_eval = y_float[N_CALIB:] + 0.01 * rng.standard_normal(y_float[N_CALIB:].shape).astype(np.float32)
    np.savez(out / "data.npz", x_calib=x[:N_CALIB], x_eval=x[N_CALIB:], y_eval=y_eval.astype(np.float32),
             y_float=y_float[N_CALIB:])


@pytest.fixture(scope="session")
def tiny_models(request):
    """Directory with float32.tflite, int8.tflite, stream_float32.tflite, float32.onnx, data.npz."""
    return built_in_child(request, "tiny_lstm_models", build, (T, F, UNITS, N_EVAL, N_CALIB), FILES,
                          dists=("tensorflow-cpu", "tf-keras", "tf2onnx"))


def make_artifacts_dir(models: Path, dest: Path, with_truncated=True) -> Path:
    """artifacts/<model>/ as `edge export` writes it (docs/CONTRACTS.md), from the fixture models."""
    from groundfloor.fileio import sha256_file, write_json
    art = dest / "tiny"
    art.mkdir(parents=True, exist_ok=True)
    shutil.copy2(models / "data.npz", art / "data.npz")
    entries = {
        "float32_tflite": ("model_float32.tflite", "float32.tflite", "tflite", "float32", False, False),
        "int8_tflite": ("model_int8.tflite", "int8.tflite", "tflite", "int8", True, False),
        "float32_onnx": ("model_float32.onnx", "float32.onnx", "onnx", "float32", False, False),
        "stream_float32_tflite": ("model_stream_float32.tflite", "stream_float32.tflite", "tflite",
                                  "float32", False, True),
    }
    artifacts = {}
    for name, (fname, src, fmt, mode, quant, streaming) in entries.items():
        shutil.copy2(models / src, art / fname)
        artifacts[name] = _entry(art / fname, fmt, mode, quant, streaming, sha256_file)
    if with_truncated:
        data = (models / "int8.tflite").read_bytes()
        (art / "model_truncated_int8.tflite").write_bytes(data[: len(data) // 2])
        artifacts["truncated_int8_tflite"] = _entry(art / "model_truncated_int8.tflite", "tflite", "int8",
                                                    True, False, sha256_file)
        artifacts["truncated_int8_tflite"]["sha256"] = "0" * 64  # what export recorded before truncation
    artifacts["failed_export"] = {"file": "model_16x8.tflite", "format": "tflite", "mode": "int16x8",
                                  "quantized": True, "streaming": False, "status": "failed",
                                  "error": "Quantization to 16x8-bit not yet supported"}
    with np.load(art / "data.npz") as d:
        n_eval = int(d["x_eval"].shape[0])
    manifest = {
        "schema": 1, "model": "tiny", "task": "regression",
        "source": {"path": "source_tfkeras.h5", "sha256": None, "format": "h5", "rebuilt_in_tf_keras": False,
                   "rebuild_max_abs_diff": 0.0, "input_shape": [1, T, F], "output_shape": [1, 1],
                   "params": 4 * UNITS * (F + UNITS + 1) + UNITS + 1, "lint": []},
        "data": {"file": "data.npz", "sha256": sha256_file(art / "data.npz"), "calib_samples": N_CALIB,
                 "eval_samples": n_eval, "preprocessing": {}, "units": None},
        "float_metric": {"name": "rmse", "value": 0.01},
        "artifacts": artifacts,
    }
    write_json(art / "manifest.json", manifest)
    return art


def _entry(path, fmt, mode, quant, streaming, sha):
    dtype = "int8" if mode == "int8" else "float32"
    steps = 1 if streaming else T
    return {"file": path.name, "format": fmt, "mode": mode, "quantized": quant, "streaming": streaming,
            "status": "ok", "error": None, "bytes": path.stat().st_size, "sha256": sha(path), "ops": [],
            "weight_bytes_by_dtype": {},
            "io": {"inputs": [{"name": "x", "dtype": dtype, "shape": [1, steps, F], "scale": None, "zero_point": None}],
                   "outputs": [{"name": "y", "dtype": dtype, "shape": [1, 1], "scale": None, "zero_point": None}]},
            "options": {}, "tool_versions": {}, "seconds": 0.0, "cache_key": None, "notes": []}


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_models, tmp_path_factory):
    """artifacts/tiny/ with float, int8, ONNX, streaming, a truncated and a failed artifact."""
    return make_artifacts_dir(tiny_models, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def x_eval_npz(tiny_models, tmp_path_factory):
    """The evaluation windows as the runners read them: an .npz with `x`."""
    p = tmp_path_factory.mktemp("x") / "x.npz"
    with np.load(tiny_models / "data.npz") as d:
        np.savez(p, x=d["x_eval"])
    return p


def bench_dir(tmp_path_factory, name):
    """A fresh folder for one module's bench fixture and the runner cache inside it: (folder, cache)."""
    tmp = tmp_path_factory.mktemp(name)
    return tmp, tmp / "cache"


def timed_bench(artifacts, devices, out, **kw):
    """bench_model(artifacts, devices, out, **kw) and the wall seconds it took: (report, seconds)."""
    import time
    from firmware_sim.bench import bench_model
    t0 = time.perf_counter()
    report = bench_model(artifacts, devices, out, **kw)
    return report, time.perf_counter() - t0


def child_hang(**kwargs):
    """A runner child that never finishes (for the timeout test)."""
    import time
    time.sleep(3600)


# ----------------------------------------------------------------------------- stream demo models

TESTS_DIR = str(Path(__file__).resolve().parent)


def demo_model_child(out_dir: str, steps: int = 8, features: int = 2, units: int = 8,
                     stacked: bool = False, bidirectional: bool = False, seed: int = 0) -> dict:
    """Child process (TensorFlow): a tiny tf-keras LSTM, batch 1, briefly trained on smooth
    random signals; writes source_tfkeras.h5, data.npz and model_float32.tflite."""
    from export.tfenv import seed_everything, tf_and_keras2
    from groundfloor.fileio import write_npz
    from export.tflite import convert
    tf, K = tf_and_keras2()
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    n = 96
    t = np.arange(steps)[None, :, None]
    freq = rng.uniform(0.05, 0.3, (n, 1, features))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, features))
    x = (np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.standard_normal((n, steps, features))).astype(np.float32)
    y = (x[:, -3:, :1].mean(axis=1) + 0.5 * x[:, 0, 1:2]).astype(np.float32)

    def build(batch):
        inp = K.Input(batch_shape=(batch, steps, features))
        h = inp
        if stacked:
            h = K.layers.LSTM(units, return_sequences=True)(h)
        lstm = K.layers.LSTM(units)
        h = K.layers.Bidirectional(lstm)(h) if bidirectional else lstm(h)
        return K.Model(inp, K.layers.Dense(1)(h))

    model = build(1)
    if not bidirectional:  # (the Bidirectional model only has to be refused)
        train = build(None)
        train.compile(K.optimizers.Adam(0.02), "mse")
        train.fit(x[:64], y[:64], batch_size=16, epochs=3, verbose=0)
        model.set_weights(train.get_weights())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "source_tfkeras.h5"), include_optimizer=False)
    x_eval = x[64:]
    y_float = np.concatenate([np.asarray(model(w[None], training=False)) for w in x_eval])
    write_npz(out / "data.npz", x_calib=x[:64], x_eval=x_eval, y_eval=y[64:], y_float=y_float)
    if not bidirectional:
        convert(str(out / "source_tfkeras.h5"), str(out / "model_float32.tflite"), "float32")
    return {"steps": steps, "features": features}


def run_demo_model_child(timeout: float = 600.0, **kwargs):
    """demo_model_child in an isolated child process (this folder on its path)."""
    from groundfloor.isolate import run_isolated
    return run_isolated("fixtures_models:demo_model_child", kwargs, timeout,
                        env={"PYTHONPATH": TESTS_DIR + os.pathsep + os.environ.get("PYTHONPATH", "")})


def build_demo_artifacts(out_dir, stacked: bool = False, timeout: float = 600.0) -> dict:
    """A tiny LSTM(8) on [1, 8, 2] with its whole-sequence float32/int8 TFLite files and all
    streaming artifacts, in out_dir: enough to try edge.runtime without the full pipeline."""
    from groundfloor.isolate import run_isolated
    from export.streaming import export_streaming
    out = Path(out_dir)
    r = run_demo_model_child(timeout, out_dir=str(out), stacked=stacked)
    if not r.ok:
        raise RuntimeError(f"demo model: {r.error} {r.stderr_tail[-300:]}")
    r = run_isolated("export.tflite:convert", {"model_path": str(out / "source_tfkeras.h5"),
                                               "out_path": str(out / "model_int8.tflite"), "mode": "int8",
                                               "calib_path": str(out / "data.npz")}, timeout)
    if not r.ok:
        raise RuntimeError(f"demo int8 conversion: {r.error}")
    records = export_streaming(out / "source_tfkeras.h5", out, out / "data.npz", timeout=timeout)
    return {"dir": str(out), "records": records}


def demo_artifacts(request, tmp_path_factory) -> dict:
    """build_demo_artifacts, built once and kept in pytest's cache, keyed by the export and
    ground-floor code that makes them (a change there rebuilds them) and the tool versions;
    each session gets its own copy, so no test can change the cached files."""
    import json
    from groundfloor.cache import code_hash
    from groundfloor.versions import tool_versions
    root = Path(TESTS_DIR).parent
    code = [*root.glob("export/**/*.py"), *root.glob("groundfloor/*.py"), __file__,
            Path(TESTS_DIR) / "tiny_keras.py", Path(TESTS_DIR) / "child_build.py"]
    key = code_hash(code, extra=sorted(tool_versions().items()))
    cache = Path(request.config.cache.mkdir(f"stream_demo_{key}"))
    filled_cache(cache, ["records.json"], [sys.executable, __file__, "demo"], "stream demo")
    out = tmp_path_factory.mktemp("stream_demo")
    for f in cache.iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, out / f.name)
    return {"dir": str(out), "records": json.loads((out / "records.json").read_text())}


if __name__ == "__main__":
    if sys.argv[1] == "demo":   # filled_cache's build of demo_artifacts
        import json
        made = build_demo_artifacts(Path(sys.argv[2]))
        (Path(sys.argv[2]) / "records.json").write_text(json.dumps(made["records"]))
    else:
        build(Path(sys.argv[1]))
