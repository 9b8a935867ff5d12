"""The streaming twins on the tf-keras side (run in a child process: imports TensorFlow):
which models can stream, the one-step twin whose fused LSTM keeps its state in variable
tensors, and the state-I/O twin written to ONNX with its state layout in metadata_props.
export/streaming.py converts and records them."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from groundfloor import seal
from groundfloor.fileio import temp_path_for
from groundfloor.runtime import STREAM_METADATA_KEY  # ONNX metadata_props: which inputs/outputs are state
from export.keras_bridge import REBUILD_TOLERANCE
from export.onnx_export import OPSET

# A twin (same weights, one step per call) must reproduce the whole model within the bound
# the tf-keras rebuild is held to: both are float re-expressions of the same weights.
TWIN_TOLERANCE = REBUILD_TOLERANCE

# Layers that act on each time step on its own (or only on the LSTM's last output).
_PER_STEP_LAYERS = {"InputLayer", "LSTM", "Dense", "Dropout", "Activation", "BatchNormalization",
                    "LayerNormalization", "GaussianNoise", "GaussianDropout", "ActivityRegularization",
                    "ReLU", "Softmax", "LeakyReLU"}
_WHY = {
    "Bidirectional": "reads the sequence backwards as well as forwards, so every output depends on "
                     "samples that have not arrived yet; a stream only sees the past",
    "GRU": "has no fused TFLite op, so no variable tensor keeps its state between invoke() calls",
    "SimpleRNN": "has no fused TFLite op, so no variable tensor keeps its state between invoke() calls",
    "ConvLSTM1D": "has no fused TFLite op",
    "Conv1D": "mixes neighbouring time steps",
    "Flatten": "mixes all time steps",
    "GlobalAveragePooling1D": "mixes all time steps",
    "GlobalMaxPooling1D": "mixes all time steps",
    "MaxPooling1D": "mixes neighbouring time steps",
    "AveragePooling1D": "mixes neighbouring time steps",
    "Masking": "masking is not supported by the fused LSTM op",
    "Attention": "attends over the whole sequence",
    "MultiHeadAttention": "attends over the whole sequence",
}


def _layer_class(layer) -> str:
    return type(layer).__name__


def streamability_problems(model) -> list[str]:
    """Reasons the (tf-keras) model cannot stream; empty when it can."""
    problems = []
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        problems.append("only single-input, single-output models can stream")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 3:
        problems.append(f"input shape {list(shape)} is not [batch, time, features]")
    lstm_seen = False
    for layer in model.layers:
        cls = _layer_class(layer)
        if cls == "LSTM":
            lstm_seen = True
            cfg = layer.get_config()
            for key, why in (("go_backwards", "reads the sequence backwards"),
                             ("return_state", "returns its state (the streaming twin manages state itself)"),
                             ("stateful", "is stateful=True (export the stateless model; the stream keeps the state)"),
                             ("unroll", "is unrolled (no fused op, so no state between calls)")):
                if cfg.get(key):
                    problems.append(f"layer '{layer.name}' (LSTM) {why}")
        elif cls not in _PER_STEP_LAYERS:
            why = _WHY.get(cls, "is not a per-time-step layer the streaming twin can reproduce")
            problems.append(f"layer '{layer.name}' ({cls}) {why}")
    if not lstm_seen and not problems:
        problems.append("the model has no LSTM layer")
    return problems


def build_stream_twin(model, tf_keras):
    """Same layers and weights, input [1, 1, F]: TFLite keeps the state in variable tensors."""
    config = model.get_config()
    features = int(model.inputs[0].shape[-1])

    def one_step(shape):
        shape = list(shape)
        if len(shape) == 3:
            shape[0], shape[1] = 1, 1
        return shape

    for layer in config["layers"]:
        cfg = layer["config"]
        if "batch_input_shape" in cfg:
            cfg["batch_input_shape"] = [1, 1, features]
        build = layer.get("build_config")
        if build and isinstance(build.get("input_shape"), (list, tuple)) and build["input_shape"] \
                and not isinstance(build["input_shape"][0], (list, tuple)):
            build["input_shape"] = one_step(build["input_shape"])
    cls = tf_keras.Sequential if isinstance(model, tf_keras.Sequential) else tf_keras.Model
    twin = cls.from_config(config)
    twin.set_weights(model.get_weights())
    return twin


def build_state_io_twin(model, tf_keras):
    """Input [1, 1, F] plus h0/c0 per LSTM layer; outputs y plus h/c per layer (linear chains).

    Returns (twin, spec) with spec = {"input", "output", "state": [[in, out, units], ...]}.
    """
    features = int(model.inputs[0].shape[-1])
    x_in = tf_keras.Input(batch_shape=(1, 1, features), name="x")
    inputs, outputs_state, spec_state = [x_in], [], []
    x = x_in
    k = 0
    for layer in model.layers:
        cls = _layer_class(layer)
        if cls == "InputLayer":
            continue
        cfg = layer.get_config()
        if cls == "LSTM":
            units = int(cfg["units"])
            cfg["return_state"] = True
            new = tf_keras.layers.LSTM.from_config(cfg)
            h0 = tf_keras.Input(batch_shape=(1, units), name=f"h0_{k}")
            c0 = tf_keras.Input(batch_shape=(1, units), name=f"c0_{k}")
            x, h, c = new(x, initial_state=[h0, c0])
            inputs += [h0, c0]
            outputs_state += [h, c]
            spec_state += [[f"h0_{k}", f"h_{k}", units], [f"c0_{k}", f"c_{k}", units]]
            k += 1
        else:
            new = type(layer).from_config(cfg)
            x = new(x)
        new.set_weights(layer.get_weights())
    twin = tf_keras.Model(inputs, [x] + outputs_state)
    return twin, {"input": "x", "output": "y", "state": spec_state}


def _verify_state_io_twin(model, twin, spec, x):
    """Step windows through the state-I/O twin, feeding the state back; compare with model."""
    from export.tfenv import graph_call
    step_twin, whole = graph_call(twin), graph_call(model)
    worst = 0.0
    for window in np.asarray(x, np.float32):
        state = [np.zeros((1, units), np.float32) for _, _, units in spec["state"]]
        for step in window:
            out = step_twin([step[None, None]] + state)
            y, state = np.asarray(out[0]), [np.asarray(s) for s in out[1:]]
        ref = np.asarray(whole(window[None]))
        worst = max(worst, float(np.max(np.abs(ref.reshape(-1) - y.reshape(-1)[-ref.size:]))))
    return worst


def _rename_onnx_io(model_proto, new_inputs, new_outputs):
    """Rename graph inputs/outputs (in order) everywhere they are referenced."""
    g = model_proto.graph
    mapping = {}
    for vi, name in zip(g.input, new_inputs):
        mapping[vi.name] = name
    for vi, name in zip(g.output, new_outputs):
        mapping[vi.name] = name
    for node in g.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        vi.name = mapping.get(vi.name, vi.name)


def set_stream_metadata(model_proto, spec):
    for p in list(model_proto.metadata_props):
        if p.key == STREAM_METADATA_KEY:
            model_proto.metadata_props.remove(p)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = STREAM_METADATA_KEY, json.dumps(spec)


def build_twins_child(model_path: str, work_dir: str, onnx_path: str, calib_path: str | None = None,
                      opset: int = OPSET, verify_windows: int = 4) -> dict:
    """Child-process side (imports TensorFlow): saves the stream twin .h5 and writes the
    state-I/O ONNX twin. Returns {"streamable": False, "problems": [...]} when the model
    cannot stream, and "onnx_error" when only the ONNX part failed."""
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    model = tf_keras.models.load_model(model_path, compile=False)
    problems = streamability_problems(model)
    if problems:
        return {"streamable": False, "problems": problems}
    twin = build_stream_twin(model, tf_keras)
    twin_path = str(Path(work_dir) / "stream_source_tfkeras.h5")
    twin.save(twin_path, include_optimizer=False)
    steps = int(model.inputs[0].shape[1])
    features = int(model.inputs[0].shape[-1])

    result = {"streamable": True, "twin_path": twin_path, "steps": steps, "features": features}
    try:
        result.update(_onnx_twin(tf, tf_keras, model, onnx_path, calib_path, opset, verify_windows,
                                 steps, features))
    except Exception as e:  # the TFLite stream models can still be made
        result["onnx_error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
    return result


def _onnx_twin(tf, tf_keras, model, onnx_path, calib_path, opset, verify_windows, steps, features):
    start = time.perf_counter()
    io_twin, spec = build_state_io_twin(model, tf_keras)
    if calib_path:
        x = np.load(calib_path)["x_calib"][:verify_windows]
    else:
        x = np.random.default_rng(0).standard_normal((verify_windows, steps, features))
    keras_diff = _verify_state_io_twin(model, io_twin, spec, x)
    if not keras_diff <= TWIN_TOLERANCE:
        raise RuntimeError(f"state-I/O twin differs from the model by {keras_diff:.3g} "
                           "(is the model a linear chain of layers?)")
    from export.onnx_export import from_keras as onnx_from_keras
    sig = [tf.TensorSpec((1, 1, features), tf.float32, name="x")]
    sig += [tf.TensorSpec((1, units), tf.float32, name=name) for name, _, units in spec["state"]]
    tmp = temp_path_for(onnx_path)
    try:
        proto = onnx_from_keras(io_twin, sig, tmp, opset)   # canonical generated names
        in_names = [spec["input"]] + [s[0] for s in spec["state"]]
        out_names = [spec["output"]] + [s[1] for s in spec["state"]]
        if len(proto.graph.input) != len(in_names) or len(proto.graph.output) != len(out_names):
            raise RuntimeError(f"unexpected ONNX I/O: {[i.name for i in proto.graph.input]} -> "
                               f"{[o.name for o in proto.graph.output]}")
        # Inputs carry the TensorSpec names (maybe with ":0"); outputs follow the Keras order.
        by_name = {i.name.split(":")[0]: i.name for i in proto.graph.input}
        if set(by_name) == set(in_names):
            order = {name: k for k, name in enumerate(in_names)}
            current = sorted(proto.graph.input, key=lambda i: order[i.name.split(":")[0]])
            proto.graph.ClearField("input")
            proto.graph.input.extend(current)
        _rename_onnx_io(proto, in_names, out_names)
        set_stream_metadata(proto, spec)
        seal.write_model(onnx_path, proto.SerializeToString())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"onnx_spec": spec, "onnx_seconds": time.perf_counter() - start,
            "keras_state_twin_max_abs_diff": keras_diff}
