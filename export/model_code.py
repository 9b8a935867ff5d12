"""Code a Keras model file would run when loaded, found by reading its saved config (and a
SavedModel's graph) before any Keras loader sees the file.

tf-keras `load_model` on an .h5 file or a SavedModel unmarshals and runs a Lambda layer's
Python bytecode, and resolves functions and classes by module name (FIELD_NOTES: a planted
`open(..., "w")` ran). Keras 3 `.keras` files are loaded with safe_mode on; their Lambdas are
refused here too, with the same message. `refuse_code(path)` raises BadInput unless the user
trusts the file (`--trust-model-code`).
"""
from __future__ import annotations

import builtins
import json
import os
import zipfile

from groundfloor.errors import BadInput

TRUST_HINT = "pass --trust-model-code if you trust the file"
MAX_CONFIG_BYTES = 64 << 20   # a saved config larger than this is not a model config

# Modules a tf-keras config may name: everything else is imported and called into by the
# tf-keras deserializer (it imports any module a config names).
_SAFE_MODULE_ROOTS = {"keras", "tf_keras", "builtins"}
# TensorFlow graph ops that reach outside the model when it runs: files and Python callbacks.
# (A SavedModel's own saver uses SaveV2/RestoreV2/MergeV2Checkpoints, which are not here.)
HOSTILE_OPS = {"WriteFile", "ReadFile", "MatchingFiles", "DeleteFile", "PyFunc", "PyFuncStateless",
               "EagerPyFunc", "CreateSummaryFileWriter", "DatasetToTFRecord",
               "ExperimentalDatasetToTFRecord"}
# A tf-keras TFOpLambda layer names the TensorFlow function it calls ("math.add"); any of these
# in that dotted name leaves the graph (files, Python, devices), e.g. "compat.v1.io.write_file".
_TF_OUTSIDE_NAMES = {"io", "gfile", "write_file", "read_file", "summary", "data", "debugging", "saved_model",
                     "train", "raw_ops", "py_func", "py_function", "numpy_function", "print", "Print",
                     "experimental", "distribute", "queue", "lookup", "autograph", "config", "profiler",
                     "tpu", "sysconfig", "audio"}


def refuse_code(path, trust: bool = False):
    """BadInput naming the first code-carrying entry of the model file, unless trusted."""
    if trust:
        return
    found = find_code(path)
    if found:
        raise BadInput(path, f"{found[0]}; loading it would run that code; {TRUST_HINT}")


def find_code(path) -> list[str]:
    """What in the file would run Python code (or touch files from its graph) when loaded."""
    path = str(path)
    if os.path.isdir(path):
        return _saved_model_code(path)
    config = saved_config(path)
    return walk_config(config, tf_keras=not zipfile.is_zipfile(path)) if config is not None else []


def saved_config(path) -> dict | None:
    """The model config stored in a .keras zip (config.json) or an .h5 file (model_config),
    read as JSON without importing any class; None when there is none."""
    return _zip_config(path) if zipfile.is_zipfile(path) else _h5_config(path)


def walk_config(config, tf_keras: bool = True) -> list[str]:
    """Code-carrying entries of a model config (a .keras config.json, an .h5 model_config or a
    SavedModel node's metadata). tf_keras: the config is read by tf-keras, whose deserializer
    imports any module a config names, so such names count as code too."""
    found = []
    try:
        _walk(config, found, None, tf_keras)
    except RecursionError:   # no model config nests this deep: refuse what cannot be checked
        found.append("the model config is nested too deeply to check")
    return found


def _walk(obj, found, layer, tf_keras):
    if isinstance(obj, list):
        for v in obj:
            _walk(v, found, layer, tf_keras)
        return
    if not isinstance(obj, dict):
        return
    cls, cfg = obj.get("class_name"), obj.get("config")
    if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
        layer = cfg["name"]
    where = f"layer '{layer}'" if layer else "the model config"
    if cls == "Lambda" and isinstance(cfg, dict):
        found.append(f"{where} is a Lambda {_lambda_kind(cfg)}")
        return
    if cls in ("TFOpLambda", "SlicingOpLambda") and isinstance(cfg, dict) and isinstance(cfg.get("function"), str) \
            and set(cfg["function"].split(".")) & _TF_OUTSIDE_NAMES:
        found.append(f"{where} calls tf.{cfg['function']}, which reaches outside the model")
        return
    if cls == "__lambda__" or "lambda" in (obj.get("function_type"), obj.get("output_shape_type")):
        found.append(f"{where} holds a Python lambda (marshalled bytecode)")
        return
    module = obj.get("module")
    if tf_keras and cls is not None and isinstance(module, str):
        name = cfg if isinstance(cfg, str) else cls
        if module.split(".")[0] not in _SAFE_MODULE_ROOTS:
            found.append(f"{where} names '{name}' from the Python module '{module}' (tf-keras imports it)")
            return
        if module == "builtins" and isinstance(name, str) and hasattr(builtins, name):
            found.append(f"{where} names the Python built-in '{name}'")
            return
    for v in obj.values():
        _walk(v, found, layer, tf_keras)


def _lambda_kind(cfg) -> str:
    fn = cfg.get("function")
    if cfg.get("function_type") == "function" and isinstance(fn, str):
        return f"calling the Python function '{fn}'"
    if isinstance(fn, dict) and fn.get("class_name") == "function":
        return f"calling the Python function '{fn.get('config')}'"
    return "with Python code"


def _h5_config(path):
    """The model_config attribute of an .h5 file (json), or None when there is none."""
    try:
        import h5py
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except Exception:  # noqa: BLE001 - not HDF5: the loaders refuse it themselves
        return None
    if raw is None:
        return None
    return _parse(raw.decode() if isinstance(raw, bytes) else str(raw))


def _zip_config(path):
    try:
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                return None
            if z.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                raise BadInput(path, "config.json is larger than any model config: refused")
            text = z.read("config.json").decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return None
    return _parse(text)


def _parse(text):
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        return None   # the loaders fail on it too: nothing runs
    return config if isinstance(config, dict) else None


def _saved_model_code(path) -> list[str]:
    """Layer configs in keras_metadata.pb (or saved_model.pb's object graph) and the graph's ops."""
    from tensorflow.core.protobuf import saved_model_pb2
    found = []
    meta = os.path.join(path, "keras_metadata.pb")
    if os.path.exists(meta):
        from tf_keras.protobuf import saved_metadata_pb2
        saved = saved_metadata_pb2.SavedMetadata()
        try:
            with open(meta, "rb") as f:
                saved.ParseFromString(f.read())
        except Exception as e:  # noqa: BLE001 - the loader would fail on it as well
            raise BadInput(meta, f"cannot read the Keras metadata: {type(e).__name__}") from None
        found += _metadata_code(n.metadata for n in saved.nodes)
    model = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            model.ParseFromString(f.read())
    except Exception:  # noqa: BLE001 - the loader refuses it itself; nothing ran
        return found
    for graph in model.meta_graphs:
        found += _metadata_code(n.user_object.metadata for n in graph.object_graph_def.nodes
                                if n.WhichOneof("kind") == "user_object")
        ops = {n.op for n in graph.graph_def.node}
        for fn in graph.graph_def.library.function:
            ops |= {n.op for n in fn.node_def}
        found += [f"its graph holds the op {op} (it reads or writes files or calls Python when the "
                  "model runs)" for op in sorted(ops & HOSTILE_OPS)]
    return found


def _metadata_code(texts) -> list[str]:
    found = []
    for text in texts:
        if text:
            found += walk_config(_parse(text), tf_keras=True)
    return list(dict.fromkeys(found))   # a layer appears in its own node and in the model's
