"""Keras (tf-keras, batch 1) to TFLite: float32, dynamic-range and full-integer int8.

Each conversion runs in a child process (`groundfloor.isolate`): the TFLite calibrator can
segfault instead of raising. `convert` is the child-side entry point.
"""
import time

import numpy as np

from groundfloor import seal
from groundfloor.isolate import retire_after_call

# Mode -> how the converter is set up. Full int8 keeps the fused LSTM's cell state in
# int16 (the kernel's design); int8 input/output so a device feeds raw int8.
# "weight_int8": the fused LSTM has no weight-only int8 route (dynamic-range mode leaves its
# weights float), so the recurrent layers are unrolled first; the unrolled graph's
# FULLY_CONNECTED ops then get int8 weights with float activations (hybrid kernels).
MODES = {
    "float32": {"optimize": False, "int8": False, "unroll": False},
    "dynamic": {"optimize": True, "int8": False, "unroll": False},
    "int8": {"optimize": True, "int8": True, "unroll": False},
    "weight_int8": {"optimize": True, "int8": False, "unroll": True},
}


def representative_windows(x):
    """The converter's representative dataset over windows x: each window as a batch of one."""
    return lambda: ([window[None]] for window in x)


def set_full_int8(conv, representative) -> None:
    """Set a TFLiteConverter up for full integer int8 (int8 kernels, int8 input and output),
    calibrated on representative() (it yields [one window], batch 1)."""
    import tensorflow as tf
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8


def convert(model_path: str, out_path: str, mode: str, calib_path: str | None = None,
            calib_key: str = "x_calib", calib_samples: int | None = None,
            align_lstm_state: bool = True) -> dict:
    """Convert a saved tf-keras model; returns a small record (seconds, converter options).
    align_lstm_state=False keeps the converter's int8 bytes as they are, even when a fused LSTM's
    output and hidden state disagree (export/lstm_int8_state.py; only tests want that file)."""
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    spec = MODES[mode]
    model = tf_keras.models.load_model(model_path, compile=False)
    if spec["unroll"]:
        from export.keras_bridge import rebuild_batch1
        recurrent = {l.name: {"unroll": True} for l in model.layers
                     if hasattr(l, "cell") or hasattr(getattr(l, "forward_layer", None), "cell")}
        model = rebuild_batch1(model, overrides=recurrent)
    start = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    options = {"mode": mode, "unrolled": spec["unroll"]}
    if spec["optimize"]:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec["int8"]:
        retire_after_call()  # the calibrator's leftovers would change the next int8 file's bytes
        x = np.load(calib_path)[calib_key].astype(np.float32)
        if calib_samples:
            x = x[:calib_samples]
        set_full_int8(conv, representative_windows(x))
        options.update(calibration_windows=int(len(x)), inference_io="int8")
    data = conv.convert()
    if spec["int8"] and align_lstm_state:
        data = _align_lstm_state(data, options)
    seal.write_model(out_path, data)
    return {"seconds": time.perf_counter() - start, "options": options}


def _align_lstm_state(data: bytes, options: dict) -> bytes:
    """The converter's int8 bytes with every fused LSTM's output quantized as its hidden state
    and every code-moving op's input as its output (a Bidirectional layer's are not); the same
    bytes when they already agree."""
    from export.lstm_int8_state import align_bytes
    data, changes = align_bytes(data)
    if changes:
        options["lstm_state_aligned"] = changes
    return data
