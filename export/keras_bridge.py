"""Load any Keras model and rebuild it in tf-keras (Keras 2) with batch 1.

Why: only tf-keras with a static batch yields the fused UNIDIRECTIONAL_SEQUENCE_LSTM op;
Keras 3 LSTMs become WHILE loops whose int8 calibration segfaults (FIELD_NOTES.md). The
rebuilt model gets the original's weights (rescaled where tf-keras defines a Keras 3
activation differently, export/activations.py) and is checked numerically before any
conversion. Loading never runs code from the file unless the caller trusts it
(export/model_code.py, --trust-model-code).
"""
from pathlib import Path

import numpy as np

from export import activations, importers
from groundfloor.errors import BadInput
from export.tfenv import windows_outputs

REBUILD_TOLERANCE = 1e-5
# Keras 3 config keys that tf-keras layers do not take.
_KERAS3_ONLY_KEYS = {"seed", "module", "registered_name", "build_config", "compile_config",
                     "optional", "batch_shape", "sparse", "ragged", "quantization_config", "lora_rank",
                     "lora_alpha"}
_TRAINING_ONLY_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
# Keras 3 config keys tf-keras spells differently, per layer class.
_KERAS3_RENAMED_KEYS = {"LeakyReLU": {"negative_slope": "alpha"}}


def load_any(path, trust_code: bool = False, data_path=None):
    """Returns (model, format) for .keras (Keras 3), .h5 (tf-keras or Keras 3) or SavedModel,
    or an ONNX file / PyTorch program rebuilt in tf-keras (export/importers; data_path pins its
    dynamic dimensions). A file whose config carries Python code is refused unless trust_code
    (export/model_code.py)."""
    model, fmt, errors = open_model(path, trust_code, data_path)
    if model is None:
        raise BadInput(path, "cannot load model (corrupt or not a Keras model): " + "; ".join(errors))
    return model, fmt


def open_model(path, trust_code: bool = False, data_path=None):
    """(model, format, errors): the first loader that reads the file, or (None, None, errors)
    when none can. BadInput for a missing, empty or unsupported file, or one carrying code
    without trust_code. Nothing from the file runs unless trust_code: the config is checked
    before any loader, and the loaders run in safe mode."""
    from export.model_code import refuse_code
    from export.model_probe import probe_readers
    path = check_model_path(path)
    if importers.handles(path):   # ONNX / PyTorch: rebuilt in tf-keras, the source kept to verify
        if path.suffix.lower() == ".onnx":
            probe_readers(path)   # onnxruntime opens it in a child first
        return (*importers.load(path, data_path, trust_code), [])
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise BadInput(path, "directory is not a SavedModel (no saved_model.pb)")
        names = ["saved_model"]
    elif path.suffix.lower() in _LOADERS_BY_SUFFIX:
        names = _LOADERS_BY_SUFFIX[path.suffix.lower()]
    else:
        raise BadInput(path, f"unsupported model format '{path.suffix}' (use .keras, .h5, a SavedModel "
                             "directory, .onnx, .pt2 or .pt)")
    probe_readers(path)   # a corrupt file may hang or crash HDF5 / protobuf: read it in a child first
    refuse_code(path, trust=trust_code)
    errors = []
    for fmt in names:
        try:
            return _LOADERS[fmt](path, trust_code), fmt, errors
        except Exception as e:  # try the next loader, then report all in one line
            errors.append(f"{type(e).__name__}: {' '.join(str(e).split())[:160]}")
    return None, None, errors


def check_model_path(path) -> Path:
    """BadInput for a model path that is missing or an empty file."""
    path = Path(path)
    if not path.exists():
        raise BadInput(path, "model file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise BadInput(path, "model file is empty")
    return path


def _load_tf_keras(path, trust_code):
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    with _tf_keras_safe_mode(not trust_code):
        return tf_keras.models.load_model(path, compile=False)


def _load_keras3(path, trust_code):
    return _keras3().saving.load_model(path, compile=False, safe_mode=not trust_code)


def _tf_keras_safe_mode(on: bool):
    """tf-keras's own Lambda guard (it has no public switch; the legacy .h5 path leaves it off)."""
    from tf_keras.src.saving.serialization_lib import SafeModeScope
    return SafeModeScope(on)


_LOADERS = {"saved_model": _load_tf_keras, "tf_keras_h5": _load_tf_keras, "keras3": _load_keras3,
            "keras3_h5": _load_keras3}
_LOADERS_BY_SUFFIX = {".keras": ["keras3"], ".h5": ["tf_keras_h5", "keras3_h5"],
                      ".hdf5": ["tf_keras_h5", "keras3_h5"]}


def _keras3():
    import keras
    return keras


def is_tf_keras(model) -> bool:
    return type(model).__module__.startswith("tf_keras")


def input_shape_of(model):
    shape = model.inputs[0].shape
    return tuple(int(d) for d in shape[1:])


def io_problem(model) -> str | None:
    """Why export cannot take the model as a whole (the lint reports it too), or None."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return (f"only single-input, single-output models are supported (this one has "
                f"{len(model.inputs)} input(s) and {len(model.outputs)} output(s))")
    return None


def rebuild_batch1(model, overrides=None):
    """A tf-keras copy of `model` with batch size 1 and the same weights.

    overrides: {layer name: config changes} from the lint (LintReport.overrides), e.g.
    {"gru": {"unroll": True}, "lstm": {"stateful": False}}; for Bidirectional and other
    wrappers they apply to the wrapped recurrent layer."""
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    problem = io_problem(model)
    if problem:
        raise BadInput(None, problem)
    keras3 = not is_tf_keras(model)
    rebuilt = (_rebuild_from_keras3 if keras3 else _rebuild_tf_keras)(tf_keras, model, overrides or {})
    rebuilt.set_weights(model.get_weights())
    if keras3:
        activations.rescale_weights(rebuilt)   # Keras 3's hard_sigmoid from tf-keras's
    return rebuilt


def _rebuild_tf_keras(tf_keras, model, overrides):
    config = model.get_config()
    for layer in config["layers"]:
        cfg = layer["config"]
        if "batch_input_shape" in cfg:
            cfg["batch_input_shape"] = [1] + list(cfg["batch_input_shape"][1:])
        _apply_overrides(cfg, overrides.get(cfg.get("name")))
    # The model is live in this process: its config holds no code that has not run here
    # already (a Lambda the user trusted), so tf-keras's Lambda guard is off for the copy.
    with _tf_keras_safe_mode(False):
        if isinstance(model, tf_keras.Sequential):
            return tf_keras.Sequential.from_config(config)
        return tf_keras.Model.from_config(config)


def _apply_overrides(cfg, changes):
    if not changes:
        return
    targets = [cfg] + [cfg[k]["config"] for k in ("layer", "backward_layer") if isinstance(cfg.get(k), dict)]
    for t in targets:
        if "units" in t or "cell" in t:  # the recurrent layer itself (RNN(cell) too), not its wrapper
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
        for new in _tf_keras_layers(tf_keras, layer, overrides):
            x = new(x)
    return tf_keras.Model(inp, x, name=model.name)


def _tf_keras_layers(tf_keras, layer, overrides):
    """The tf-keras layer(s) computing one Keras 3 layer exactly."""
    cls = type(layer).__name__
    cfg = _clean_keras3_config(layer.get_config())
    for old, new in _KERAS3_RENAMED_KEYS.get(cls, {}).items():
        if old in cfg:
            cfg[new] = cfg.pop(old)
    problems = activations.keras3_problems(cls, cfg)
    if problems:
        raise BadInput(None, f"layer '{layer.name}' ({cls}) has no exact tf-keras equivalent: {problems[0]}")
    _apply_overrides(cfg, overrides.get(cfg.get("name")))
    replaced = activations.activation_layers(tf_keras, cls, cfg)
    if replaced:
        return replaced
    try:
        new = tf_keras.layers.deserialize({"class_name": cls, "config": cfg})
    except Exception as e:
        raise BadInput(None, f"layer '{layer.name}' ({cls}) has no tf-keras "
                             f"equivalent: {' '.join(str(e).split())[:160]}")
    if not isinstance(new, tf_keras.layers.Layer):  # an unknown class comes back as its name
        raise BadInput(None, f"layer '{layer.name}' ({cls}) has no tf-keras "
                             "equivalent: not a built-in layer class")
    return [new]


def verify_same(original, rebuilt, x, tolerance=REBUILD_TOLERANCE) -> float:
    """Max abs difference between the two models on windows of x, one window at a time."""
    x = np.asarray(x[:32], np.float32)
    source = importers.source_of(original)   # an imported model: against the ONNX / torch original
    try:
        a = source.run(x) if source else _original_outputs(original, x)
    except Exception as e:  # noqa: BLE001 - the user's model on the user's data: one line
        raise BadInput(None, f"the model cannot be run on the data's windows: {type(e).__name__}: "
                             f"{' '.join(str(e).split())[:160]}") from None
    b = windows_outputs(rebuilt, x)
    diff = float(np.max(np.abs(a - b)))
    if not diff <= tolerance:
        raise BadInput(None, f"the tf-keras rebuild differs from the original model by {diff:.3g} "
                             f"(tolerance {tolerance}); refusing to convert")
    return diff


def verified_against(model) -> str:
    """What verify_same compares the rebuild with."""
    source = importers.source_of(model)
    return source.runtime if source else "the loaded Keras model"


def rebuild_notes(model) -> list:
    """What an imported model's rebuild did that the manifest should say (e.g. h0/c0 fed as zeros)."""
    source = importers.source_of(model)
    return list(source.notes) if source else []


def _original_outputs(model, x):
    """All windows at once; one at a time from a fresh state when the model keeps state
    between calls (stateful: the rebuild is stateless) or refuses a batch of them."""
    stateful = any(getattr(layer, "stateful", False) for layer in model.layers)
    if not stateful:
        try:
            return np.asarray(model(x, training=False))
        except Exception:  # noqa: BLE001 - e.g. a pinned batch size: window by window below
            pass
    outs = []
    for window in x:
        if stateful:
            model.reset_states()
        outs.append(np.asarray(model(window[None], training=False)))
    return np.concatenate(outs)
