"""edge.runtime, the on-device inference API: predict (state reset per window), streams,
int8 handled for the caller, clear errors that leave the stream untouched, and no
TensorFlow import."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import runtime

STREAM_MODELS = ["stream_float32.tflite", "stream_int8.tflite", "stream_float32.onnx",
                 "stream_dynamic_int8.onnx"]




@pytest.fixture(scope="module")
def data(demo):
    z = np.load(Path(demo["dir"]) / "data.npz")
    return {k: z[k] for k in z.files}


def test_runtime_never_imports_tensorflow(demo):
    code = f"""
import json, sys, numpy as np
from edge import runtime
d = {demo['dir']!r}
x = np.load(d + '/data.npz')['x_eval'][:3]
for name in {STREAM_MODELS!r} + ['model_int8.tflite']:
    m = runtime.load(d + '/' + name)
    m.predict(x)
    if m.streaming:
        s = m.stream(); s.push(x[0, 0]); s.reset()
print(json.dumps(sorted(k for k in sys.modules if 'tensorflow' in k or k.split('.')[0] in ('keras', 'tf_keras'))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("name", STREAM_MODELS)
def test_stream_push_equals_predict(demo, data, name):
    m = runtime.load(Path(demo["dir"]) / name)
    assert m.streaming and m.features == 2
    x = data["x_eval"][:4]
    y = m.predict(x)
    assert y.shape == data["y_float"][:4].shape and y.dtype == np.float32
    s = m.stream()
    for i, window in enumerate(x):
        s.reset()
        for sample in window:
            last = s.push(sample)
        np.testing.assert_array_equal(last, y[i])
    assert s.steps == 8
    # predict resets per window: the order of windows does not matter
    np.testing.assert_array_equal(m.predict(x[::-1]), y[::-1])
    per_step = m.predict(x[:2], return_sequences=True)
    assert per_step.shape == (2, 8, 1)
    np.testing.assert_array_equal(per_step[:, -1], y[:2])


def test_int8_predict_quantizes_and_dequantizes(demo, data):
    d = Path(demo["dir"])
    m = runtime.load(d / "stream_int8.tflite")
    assert m.quantized and m.input_io["dtype"] == "int8"
    y = m.predict(data["x_eval"])
    assert np.max(np.abs(y - data["y_float"])) < 0.05  # floats out, close to the float model
    raw = m.predict(data["x_eval"], raw=True)
    assert raw.dtype == np.int8
    whole = runtime.load(d / "model_int8.tflite")
    assert not whole.streaming and whole.steps == 8
    np.testing.assert_array_equal(whole.predict(data["x_eval"], raw=True), raw)


@pytest.mark.parametrize("name", ["stream_float32.tflite", "stream_int8.tflite", "stream_float32.onnx"])
def test_bad_push_leaves_state_unchanged(demo, data, name):
    m = runtime.load(Path(demo["dir"]) / name)
    window = data["x_eval"][0]
    reference = m.stream()
    expected = [reference.push(sample) for sample in window]

    s = m.stream()
    got = [s.push(sample) for sample in window[:4]]
    bad_inputs = [
        (np.zeros(3, np.float32), r"expected shape \[2\].*got shape \[3\]"),
        (np.zeros((2, 2), np.float32), r"got shape \[2, 2\]"),
        (np.array([1, 2], np.int8), r"expected floating-point.*got dtype int8"),
        (np.array([0.1, np.nan], np.float32), r"NaN"),
        ("12", r"expected floating-point"),
    ]
    for bad, pattern in bad_inputs:
        with pytest.raises(ValueError, match=pattern):
            s.push(bad)
    with pytest.raises(ValueError, match=r"expected shape \[T, 2\]"):
        s.push_many(np.zeros((3, 5), np.float32))
    assert s.steps == 4
    got += [s.push(sample) for sample in window[4:]]
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))


def test_streams_are_independent_and_reset(demo, data):
    m = runtime.load(Path(demo["dir"]) / "stream_int8.tflite")
    a, b = m.stream(), m.stream()
    x = data["x_eval"]
    ya = a.push_many(x[0])
    b.push_many(x[1])  # another stream's state does not leak into a
    a.reset()
    np.testing.assert_array_equal(a.push_many(x[0]), ya)


def test_clipped_inputs_counts_the_values_outside_the_int8_input_range(demo):
    m = runtime.load(Path(demo["dir"]) / "stream_int8.tflite")
    scale, zp = m.input_io["scale"], m.input_io["zero_point"]
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale       # the real values of codes -128 and 127
    inside, above, below = 0.5 * (lo + hi), hi + 5 * scale, lo - 5 * scale
    s = m.stream()
    s.push(np.array([inside, lo + 0.25 * scale], np.float32))   # both inside (the second rounds to -128)
    assert s.clipped_inputs == 0
    s.push(np.array([above, inside], np.float32))
    s.push_many(np.array([[below, above], [inside, inside]], np.float32))
    assert s.clipped_inputs == 3 and s.steps == 4
    s.reset()
    assert s.clipped_inputs == 0


def test_clear_errors(demo, data, tmp_path):
    d = Path(demo["dir"])
    whole = runtime.load(d / "model_float32.tflite")
    with pytest.raises(ValueError, match="whole-sequence model"):
        whole.stream()
    with pytest.raises(ValueError, match=r"expected shape \[N, 8, 2\], got \[3, 7, 2\]"):
        whole.predict(np.zeros((3, 7, 2), np.float32))
    with pytest.raises(FileNotFoundError):
        runtime.load(tmp_path / "missing.tflite")
    (tmp_path / "m.pb").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported model format"):
        runtime.load(tmp_path / "m.pb")
    stream_model = runtime.load(d / "stream_float32.onnx")
    with pytest.raises(ValueError, match=r"\[N, T, 2\]"):
        stream_model.predict(np.zeros((8, 2), np.float32))


def test_command_line_example(demo):
    d = demo["dir"]
    out = subprocess.run([sys.executable, "-m", "edge.runtime", f"{d}/stream_int8.tflite", f"{d}/data.npz",
                          "-n", "2"], capture_output=True, text=True, timeout=60,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "streaming" in out.stdout and "stream, window 0" in out.stdout
