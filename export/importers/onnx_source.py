"""An .onnx file: checked with onnx.checker, read into a layer chain, rebuilt in tf-keras, and
kept as an onnxruntime session to verify the rebuild against."""
from __future__ import annotations

import numpy as np

from groundfloor.errors import BadInput


def load(path, data_shape=None, trust_code=False):
    """(tf-keras model, Source) for an ONNX file; Refusal for settings with no faithful rebuild."""
    model = read_checked(path)
    return from_model_proto(model, data_shape, name=path.stem, where=path)


def read_checked(path):
    """Parsed (one line if not), onnx.checker (one line if not), then groundfloor.verify's checks
    of initializer sizes and external-data locations before any external data is read."""
    import onnx
    from groundfloor.verify import verify_onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - a corrupt file: one line
        raise BadInput(path, f"not a readable ONNX file ({type(e).__name__}: {' '.join(str(e).split())[:120]})")
    try:
        onnx.checker.check_model(str(path))   # by path: external data beside the file
    except Exception as e:  # noqa: BLE001
        raise BadInput(path, f"fails onnx.checker: {' '.join(str(e).split())[:200]}")
    verify_onnx(path)
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model
        load_external_data_for_model(model, str(path.resolve().parent))
    return model


def from_model_proto(model, data_shape, name="imported", where=None):
    """The rebuild and the onnxruntime Source of an in-memory ModelProto (also the torch path's)."""
    from export.importers import Source
    from export.importers.keras_build import build_keras
    from export.importers.onnx_graph import read_graph
    graph = read_graph(model, data_shape)
    keras_model = build_keras(graph, name=keras_name(name))
    session = _session(model, where)
    run = _runner(session, graph)
    notes = [f"ONNX graph: {_layer_summary(graph)}; input {'[1, T, F]' if graph.batch_first else '[T, 1, F]'}",
             *graph.notes]
    return keras_model, Source("onnxruntime", run, notes)


def keras_name(stem):
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return cleaned if cleaned[:1].isalpha() else "m_" + cleaned


def _session(model, where):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise BadInput(where, f"onnxruntime cannot load it: {' '.join(str(e).split())[:160]}")


def _runner(session, graph):
    """[N, T, F] windows -> [N, ...] outputs in the Keras layout, one window at a time (the
    exported graph is batch 1)."""
    zeros = {name: np.zeros(shape, dtype) for name, shape, dtype in graph.state_inputs}   # h0 / c0 inputs

    def run(x):
        outs = []
        for window in np.asarray(x, np.float32):
            feed = window[None] if graph.batch_first else window[:, None, :]
            y = session.run(None, {graph.input_name: feed, **zeros})[0]
            outs.append(np.transpose(y, graph.output_perm).reshape(graph.output_shape))
        return np.concatenate(outs)
    return run


def _layer_summary(graph):
    from export.importers.onnx_ir import Recurrent
    parts = []
    for layer in graph.layers:
        if isinstance(layer, Recurrent):
            parts.append(f"{layer.cell}({layer.units}{', bidirectional' if len(layer.directions) == 2 else ''}"
                         f"{', sequences' if layer.return_sequences else ''})")
        else:
            parts.append(type(layer).__name__)
    return " -> ".join(parts)
