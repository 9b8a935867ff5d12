"""Load any Keras model and rebuild it in tf-keras (Keras 2) with batch 1.

Why: only tf-keras with a static batch yields the fused UNIDIRECTIONAL_SEQUENCE_LSTM op;
Keras 3 LSTMs become WHILE loops whose int8 calibration segfaults (FIELD_NOTES.md). The
rebuilt model gets the original's weights and is checked numerically before any conversion.
"""
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput

REBUILD_TOLERANCE = 1e-5
# Keras 3 config keys that tf-keras layers do not take.
_KERAS3_ONLY_KEYS = {"seed", "module", "registered_name", "build_config", "compile_config",
                     "optional", "batch_shape", "sparse", "ragged", "quantization_config", "lora_rank",
                     "lora_alpha"}
_TRAINING_ONLY_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def load_any(path):
    """Returns (model, format) for .keras (Keras 3), .h5 (tf-keras or Keras 3) or SavedModel."""
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    path = Path(path)
    if not path.exists():
        raise BadInput(path, "model file not found")
    errors = []
    loaders = []
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise BadInput(path, "directory is not a SavedModel (no saved_model.pb)")
        loaders = [("saved_model", lambda: tf_keras.models.load_model(path, compile=False))]
    elif path.suffix == ".keras":
        loaders = [("keras3", lambda: _keras3().saving.load_model(path, compile=False))]
    elif path.suffix in (".h5", ".hdf5"):
        loaders = [("tf_keras_h5", lambda: tf_keras.models.load_model(path, compile=False)),
                   ("keras3_h5", lambda: _keras3().saving.load_model(path, compile=False))]
    else:
        raise BadInput(path, f"unsupported model format '{path.suffix}' (use .keras, .h5 or a SavedModel directory)")
    for fmt, load in loaders:
        try:
            return load(), fmt
        except Exception as e:  # try the next loader, then report all in one line
            errors.append(f"{type(e).__name__}: {' '.join(str(e).split())[:160]}")
    raise BadInput(path, "cannot load model (corrupt or not a Keras model): " + "; ".join(errors))


def _keras3():
    import keras
    return keras


def is_tf_keras(model) -> bool:
    return type(model).__module__.startswith("tf_keras")


def input_shape_of(model):
    shape = model.inputs[0].shape
    return tuple(int(d) for d in shape[1:])


def rebuild_batch1(model, overrides=None):
    """A tf-keras copy of `model` with batch size 1 and the same weights.

    overrides: {layer name: config changes} from the lint (LintReport.overrides), e.g.
    {"gru": {"unroll": True}, "lstm": {"stateful": False}}; for Bidirectional and other
    wrappers they apply to the wrapped recurrent layer."""
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInput(None, "only single-input, single-output models are supported")
    if is_tf_keras(model):
        rebuilt = _rebuild_tf_keras(tf_keras, model, overrides or {})
    else:
        rebuilt = _rebuild_from_keras3(tf_keras, model, overrides or {})
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _rebuild_tf_keras(tf_keras, model, overrides):
    config = model.get_config()
    for layer in config["layers"]:
        cfg = layer["config"]
        if "batch_input_shape" in cfg:
            cfg["batch_input_shape"] = [1] + list(cfg["batch_input_shape"][1:])
        _apply_overrides(cfg, overrides.get(cfg.get("name")))
    if isinstance(model, tf_keras.Sequential):
        return tf_keras.Sequential.from_config(config)
    return tf_keras.Model.from_config(config)


def _apply_overrides(cfg, changes):
    if not changes:
        return
    targets = [cfg] + [cfg[k]["config"] for k in ("layer", "backward_layer") if isinstance(cfg.get(k), dict)]
    for t in targets:
        if "units" in t:  # the recurrent layer itself, not its wrapper
            t.update(changes)


def _clean_keras3_config(obj):
    if isinstance(obj, dict):
        if "class_name" in obj and "config" in obj:
            if obj["class_name"] == "DTypePolicy":
                return obj["config"].get("name", "float32")
            return {"class_name": obj["class_name"], "config": _clean_keras3_config(obj["config"])}
        # Initializers, regularizers and constraints do not matter for inference (the weights
        # are copied) and their Keras 3 configs differ: let tf-keras use its defaults.
        return {k: _clean_keras3_config(v) for k, v in obj.items()
                if k not in _KERAS3_ONLY_KEYS and not k.endswith(_TRAINING_ONLY_SUFFIXES)}
    if isinstance(obj, list):
        return [_clean_keras3_config(v) for v in obj]
    return obj


def _rebuild_from_keras3(tf_keras, model, overrides):
    """Keras 3 -> tf-keras, layer by layer, for a linear chain (Sequential or functional).
    A branching graph rebuilt this way computes something else; verify_same catches it."""
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    x = inp = tf_keras.Input(shape=input_shape_of(model), batch_size=1, name="input")
    for layer in layers:
        cfg = _clean_keras3_config(layer.get_config())
        _apply_overrides(cfg, overrides.get(cfg.get("name")))
        try:
            new = tf_keras.layers.deserialize({"class_name": type(layer).__name__, "config": cfg})
        except Exception as e:
            raise BadInput(None, f"layer '{layer.name}' ({type(layer).__name__}) has no tf-keras "
                                 f"equivalent: {' '.join(str(e).split())[:160]}")
        if not isinstance(new, tf_keras.layers.Layer):  # an unknown class comes back as its name
            raise BadInput(None, f"layer '{layer.name}' ({type(layer).__name__}) has no tf-keras "
                                 "equivalent: not a built-in layer class")
        x = new(x)
    return tf_keras.Model(inp, x, name=model.name)


def verify_same(original, rebuilt, x, tolerance=REBUILD_TOLERANCE) -> float:
    """Max abs difference between the two models on windows of x, one window at a time."""
    x = np.asarray(x[:32], np.float32)
    a = np.asarray(original(x, training=False))
    b = np.concatenate([np.asarray(rebuilt(x[i:i + 1], training=False)) for i in range(len(x))])
    diff = float(np.max(np.abs(a - b)))
    if not diff <= tolerance:
        raise BadInput(None, f"the tf-keras rebuild differs from the original model by {diff:.3g} "
                             f"(tolerance {tolerance}); refusing to convert")
    return diff
