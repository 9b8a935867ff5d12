"""On-device inference for exported LSTM models: whole windows, or one sample at a time.

Needs numpy and one runtime: ai-edge-litert for .tflite, onnxruntime for .onnx. It never
imports TensorFlow. int8 models take and give floats here: inputs are quantized with the
model's input scale/zero point and outputs dequantized.

    import numpy as np

    from edge import runtime

    data = np.load("artifacts/seattle_temp/data.npz")          # x_eval: [N, 48, 1], standardized
    model = runtime.load("artifacts/seattle_temp/stream_int8.tflite")
    y = model.predict(data["x_eval"])      # [N, 1]: state reset before each window

    stream = model.stream()                # h and c carried from one push to the next
    for sample in data["x_eval"][0]:       # one sample: [F] floats, e.g. the latest reading
        y_now = stream.push(sample)        # [1]: the prediction after this sample
    assert np.allclose(y_now, y[0])        # same as the whole window (exact for these files)
    stream.reset()                         # forget the past, start a new sequence

Streaming models are `stream_*.tflite` (input [1, 1, F]; the fused LSTM's variable tensors
keep the state between calls) and `stream_*.onnx` (the state is a graph input and output;
the Stream object feeds it back). Whole-sequence models (`model_*.tflite`, `model_*.onnx`)
support `predict` only. A sample of the wrong shape or dtype, or with NaN/inf, raises
ValueError and leaves the stream's state as it was.

Command line: `python -m edge.runtime MODEL.tflite|onnx DATA.npz` prints predictions for
the first windows of x_eval.
"""
from __future__ import annotations

import atexit
import functools
import json
import threading
from pathlib import Path

import numpy as np

from groundfloor import ioquant

__all__ = ["load", "Model", "Stream", "ModelRejected"]

STREAM_METADATA_KEY = "lstm_edge.stream"  # ONNX metadata_props: which inputs/outputs are state (export/streaming.py writes it)


class ModelRejected(ValueError):
    """The file is not safe or not fit to run: corrupt, changed since export, or it crashes the
    runtime. The message names the file and what is wrong."""


def load(path, num_threads: int = 1, verify_hash: bool = True, probe: bool = True) -> "Model":
    """Open a .tflite or .onnx model exported by this toolkit.

    Before the runtime sees the file it is verified (groundfloor.verify: structure, indices,
    sizes), its sha256 is compared with the manifest.json next to it when there is one and
    with the seal the export wrote inside it (groundfloor.seal; verify_hash=False skips both),
    and it is loaded and run once in a child process
    (probe=False skips that), so a file that would crash the runtime raises ModelRejected
    here instead of killing the calling process."""
    from groundfloor import seal, verify
    from groundfloor.errors import BadInput
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found")
    backend = _BACKENDS.get(path.suffix)
    if backend is None:
        raise ValueError(f"{path}: unsupported model format '{path.suffix}' (expected .tflite or .onnx)")
    try:
        if verify_hash:   # first: a file the export recorded must be exactly that file
            verify.verify_hash(path)
        (verify.verify_tflite if path.suffix == ".tflite" else verify.verify_onnx)(path)
        if verify_hash:   # then the seal inside it (read once the structure is known sound)
            seal.check(path)
    except BadInput as e:
        raise ModelRejected(str(e)) from None
    if probe and not _probe(path, num_threads, default_delegate=True):
        backend = functools.partial(_TFLiteBackend, default_delegate=False)
    return Model(path, backend, num_threads)


_probe_worker = None   # one child process for every probe of this process (replaced after a crash)
_probe_lock = threading.Lock()


def _probe(path, num_threads, default_delegate=True) -> bool:
    """Load and run the file once in a child. True: it runs as it is; False: a .tflite that
    crashed LiteRT's default delegate (XNNPACK) runs without it; ModelRejected otherwise."""
    global _probe_worker
    from groundfloor.isolate import Worker
    with _probe_lock:
        if _probe_worker is None:
            _probe_worker = Worker()
            atexit.register(_probe_worker.close)
        r = _probe_worker.run("groundfloor.runtime:probe_child",
                              {"path": str(path), "num_threads": num_threads,
                               "default_delegate": default_delegate}, timeout=120)
    if r.ok:
        return default_delegate
    if r.status == "crashed" and default_delegate and Path(path).suffix == ".tflite":
        return _probe(path, num_threads, default_delegate=False)
    if r.status in ("crashed", "timeout"):
        raise ModelRejected(f"{path}: the runtime {r.error.replace('process ', '')} loading and running it "
                            "once: refused")
    raise ModelRejected(f"{path}: {r.error}")


def probe_child(path: str, num_threads: int = 1, default_delegate: bool = True) -> bool:
    """Child side of load(): open the file in its runtime and run one window of zeros."""
    p = Path(path)
    backend = _BACKENDS[p.suffix] if default_delegate or p.suffix != ".tflite" else \
        functools.partial(_TFLiteBackend, default_delegate=False)
    model = Model(p, backend, num_threads)
    model.predict(np.zeros((1, model.steps or 1, model.features), np.float32))
    return True


# --------------------------------------------------------------------------- backends

class _TFLiteBackend:
    """LiteRT interpreter. State (streaming models) lives in the LSTM's variable tensors."""

    def __init__(self, path, num_threads, default_delegate=True):
        self.interp, self.delegate = _litert_interpreter(path, num_threads, default_delegate)
        inputs, outputs = self.interp.get_input_details(), self.interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        self.input_io = _io(self._in["name"], self._in["dtype"], self._in["shape"], self._in["quantization"])
        self.output_io = _io(self._out["name"], self._out["dtype"], self._out["shape"], self._out["quantization"])

    def reset(self):
        self.interp.reset_all_variables()

    def run(self, x):
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        return self.interp.get_tensor(self._out["index"]).copy()

    def stateful(self):
        return True  # the fused LSTM's variable tensors


def _litert_interpreter(path, num_threads, default_delegate=True):
    """LiteRT with its default delegate (XNNPACK); without it when the delegate cannot prepare
    the graph (an unrolled masked LSTM: "failed to create XNNPACK runtime"), as the export does."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    if default_delegate:
        try:
            interp = Interpreter(model_path=str(path), num_threads=num_threads)
            interp.allocate_tensors()
            return interp, "xnnpack"
        except RuntimeError as e:
            if "XNNPACK" not in str(e).upper() and "DELEGATE" not in str(e).upper():
                raise
    interp = Interpreter(model_path=str(path), num_threads=num_threads,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp, ("none (the default XNNPACK delegate cannot prepare this graph)" if default_delegate else
                    "none (the default XNNPACK delegate crashed on this graph)")


class _OnnxBackend:
    """onnxruntime session. State inputs/outputs are named in the model's metadata."""

    def __init__(self, path, num_threads):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        ins, outs = self.sess.get_inputs(), self.sess.get_outputs()
        meta = self.sess.get_modelmeta().custom_metadata_map
        if STREAM_METADATA_KEY in meta:
            spec = json.loads(meta[STREAM_METADATA_KEY])
            x_name, y_name, state = spec["input"], spec["output"], spec["state"]
        else:  # first input/output are the data, the rest pair up as state, in order
            x_name, y_name = ins[0].name, outs[0].name
            state = [[i.name, o.name, None] for i, o in zip(ins[1:], outs[1:])]
        by_in = {i.name: i for i in ins}
        by_out = {o.name: o for o in outs}
        self.x_name, self.y_name = x_name, y_name
        self.state_in = [s[0] for s in state]
        self.state_out = [s[1] for s in state]
        self.state_shapes = [[d if isinstance(d, int) else 1 for d in by_in[n].shape] for n in self.state_in]
        x_shape = [d if isinstance(d, int) else 1 for d in by_in[x_name].shape]
        y_shape = [d if isinstance(d, int) else 1 for d in by_out[y_name].shape]
        self.input_io = _io(x_name, np.float32, x_shape, (0.0, 0))
        self.output_io = _io(y_name, np.float32, y_shape, (0.0, 0))
        self.state = None
        self.reset()

    def reset(self):
        self.state = [np.zeros(s, np.float32) for s in self.state_shapes]

    def run(self, x):
        feeds = {self.x_name: x}
        feeds.update(zip(self.state_in, self.state))
        out = self.sess.run([self.y_name] + self.state_out, feeds)
        self.state = out[1:]  # only after a successful run
        return out[0]

    def stateful(self):
        return bool(self.state_in)


def _io(name, dtype, shape, quantization):
    dtype = np.dtype(dtype)
    scale, zp = quantization if quantization else (0.0, 0)
    quantized = dtype.kind in "iu" and scale
    return {"name": name, "dtype": dtype.name, "shape": [int(d) for d in shape],
            "scale": float(scale) if quantized else None, "zero_point": int(zp) if quantized else None}


_BACKENDS = {".tflite": _TFLiteBackend, ".onnx": _OnnxBackend}


# --------------------------------------------------------------------------- public API

class Model:
    """A loaded model. `predict` for batches of windows; `stream()` for one sample at a time."""

    def __init__(self, path, backend_cls, num_threads=1):
        self.path = Path(path)
        self.format = self.path.suffix.lstrip(".")
        self._backend_cls, self._num_threads = backend_cls, num_threads
        self._backend = backend_cls(self.path, num_threads)
        self.input_io, self.output_io = self._backend.input_io, self._backend.output_io
        shape = self.input_io["shape"]
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"{self.path}: input shape {shape} is not [1, T, F]")
        self.features = shape[2]
        self.quantized = self.input_io["scale"] is not None
        # A streaming model takes one sample per call and keeps state between calls.
        self.streaming = shape[1] == 1 and self._backend.stateful()
        self.steps = None if self.streaming else shape[1]

    def __repr__(self):
        kind = "streaming" if self.streaming else f"whole-sequence, T={self.steps}"
        return (f"<Model {self.path.name}: {self.format}, {kind}, F={self.features}, "
                f"input {self.input_io['dtype']}, output {self.output_io['dtype']}>")

    # -- conversions shared with Stream
    def _quantize(self, x):
        return ioquant.quantize_counting(x, self.input_io)

    def _dequantize(self, y):
        return ioquant.dequantize_output(y, self.output_io).astype(np.float32)

    def predict(self, sequences, return_sequences: bool = False, raw: bool = False) -> np.ndarray:
        """Outputs for windows [N, T, F] (floats), state reset before each window.

        Whole-sequence models need T equal to the model's; streaming models take any T >= 1
        and give the output after the last sample ([N, ...]) or, with return_sequences,
        after every sample ([N, T, ...]). raw=True returns the model's native (int8) outputs.
        """
        if self.streaming:
            x = _check_windows(sequences, self.features, None)
            stream = Stream(self, self._backend)
            outs = []
            for window in x:
                stream.reset()
                ys = stream._run_block(window, raw=raw)
                outs.append(ys if return_sequences else ys[-1])
            stream.reset()
            return np.stack(outs) if outs else np.zeros((0,), np.float32)
        if return_sequences:
            raise ValueError(f"{self.path.name} is a whole-sequence model: return_sequences needs a streaming model")
        x = _check_windows(sequences, self.features, self.steps)
        outs = []
        for window in x:
            self._backend.reset()  # a fresh sequence (the fused LSTM keeps state otherwise)
            q, _ = self._quantize(window[None])
            y = self._backend.run(q)
            outs.append(y[0] if raw else self._dequantize(y)[0])
        self._backend.reset()
        return np.stack(outs) if outs else np.zeros((0,), np.float32)

    def stream(self) -> "Stream":
        """A new independent stream (its own interpreter/session and state)."""
        if not self.streaming:
            raise ValueError(f"{self.path.name} is a whole-sequence model (input {self.input_io['shape']}); "
                             "load its streaming twin (stream_*.tflite / stream_*.onnx) to push one sample at a time")
        return Stream(self, self._backend_cls(self.path, self._num_threads))


class Stream:
    """One live sequence: push samples in time order, get the output after each."""

    def __init__(self, model: Model, backend):
        self.model = model
        self._backend = backend
        self.steps = 0            # samples pushed since the last reset
        self.clipped_inputs = 0   # input values outside the int8 input range since the last reset
        self._backend.reset()

    def reset(self):
        """Zero h and c: the next push starts a new sequence."""
        self._backend.reset()
        self.steps = 0
        self.clipped_inputs = 0

    def push(self, sample, raw: bool = False) -> np.ndarray:
        """Feed one sample ([F], or [1, F] / [1, 1, F]) and return the model's output after it
        (floats; raw=True gives the native int8 output). A bad sample raises ValueError before
        anything runs, so the state is unchanged."""
        f = self.model.features
        arr = _as_float_array(sample, "sample")
        if arr.shape not in ((f,), (1, f), (1, 1, f)):
            raise ValueError(f"sample: expected shape [{f}] (or [1, {f}] / [1, 1, {f}]) float values, "
                             f"got shape {list(arr.shape)}")
        _check_finite(arr, "sample")
        return self._run_block(arr.reshape(1, f), raw=raw)[0]

    def push_many(self, samples, raw: bool = False) -> np.ndarray:
        """Feed samples [T, F] in order; returns the outputs after each one, [T, ...]. The whole
        block is checked first: a bad block leaves the state unchanged."""
        arr = _as_float_array(samples, "samples")
        f = self.model.features
        if arr.ndim != 2 or arr.shape[1] != f:
            raise ValueError(f"samples: expected shape [T, {f}] float values, got shape {list(arr.shape)}")
        _check_finite(arr, "samples")
        return self._run_block(arr, raw=raw)

    def _run_block(self, samples, raw=False):
        q, clipped = self.model._quantize(samples.reshape(-1, 1, 1, self.model.features))
        outs = []
        for step in q:
            y = self._backend.run(step)
            outs.append(y if raw else self.model._dequantize(y))
            self.steps += 1
        self.clipped_inputs += clipped
        out = np.stack(outs)  # [T, 1, ...] -> [T, ...]
        out = out.reshape((out.shape[0],) + tuple(out.shape[2:]))
        if out.ndim >= 3 and out.shape[1] == 1:  # per-step output with a time axis of 1
            out = out[:, 0]
        return out


# --------------------------------------------------------------------------- input checks

def _as_float_array(values, what):
    """Floats only: an int8 array here is almost always data quantized twice."""
    if isinstance(values, (np.ndarray, np.generic)):
        arr = values
        if arr.dtype.kind != "f":
            raise ValueError(f"{what}: expected floating-point values (float32), got dtype {arr.dtype}"
                             + (" (pass the real-valued sample; int8 models quantize it themselves)"
                                if arr.dtype.kind in "iu" else ""))
        return np.asarray(arr, np.float32)
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: expected an array of floats, got {type(values).__name__} ({e})") from None
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise ValueError(f"{what}: expected floating-point values (float32), got {type(values).__name__} "
                         f"of dtype {arr.dtype}")
    return arr.astype(np.float32)


def _check_finite(arr, what):
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{what}: expected finite values, got {bad} NaN/inf")


def _check_windows(sequences, features, steps):
    arr = _as_float_array(sequences, "sequences")
    t = "T" if steps is None else str(steps)
    if arr.ndim != 3 or arr.shape[2] != features or (steps is not None and arr.shape[1] != steps) \
            or arr.shape[1] == 0:
        raise ValueError(f"sequences: expected shape [N, {t}, {features}], got {list(arr.shape)}")
    _check_finite(arr, "sequences")
    return arr


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m edge.runtime", description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("data", help=".npz with x_eval [N, T, F]")
    p.add_argument("-n", type=int, default=5, help="windows to show")
    a = p.parse_args(argv)
    model = load(a.model)
    x = np.load(a.data)["x_eval"][: a.n]
    print(model)
    y = model.predict(x)
    for i, v in enumerate(y):
        print(i, np.array2string(np.asarray(v), precision=5))
    if model.streaming:
        stream = model.stream()
        last = stream.push_many(x[0])[-1]
        print("stream, window 0:", np.array2string(np.asarray(last), precision=5))


if __name__ == "__main__":
    main()
