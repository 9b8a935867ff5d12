"""ONNX models in (issue 14), without torch: hand-built graphs of the LSTM / GRU settings the
importer maps (gate order, the two biases, GRU linear_before_reset, directions, final state
readouts, MatMul + Add heads), rebuilt in tf-keras and verified against onnxruntime; every
refusal with its reason in `edge lint` and as one BadInput in export, nothing written."""
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import keras_bridge, pipeline
from export.importers.onnx_layers import keras_weights
from export.lint import lint_file
from export.lint_rules import REFUSED
from groundfloor.errors import BadInput

T, F, H = 6, 3, 5
GATES = {"LSTM": 4, "GRU": 3}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def recurrent_model(cell="LSTM", direction="forward", readout="last", attrs=None, extra_inputs=(),
                    time_dim=T, head="gemm", extra_nodes=(), outputs=None, seed=0):
    """x [1, T, F] -> Transpose -> LSTM/GRU -> (last step | Y_h) -> Dense head -> sigmoid."""
    rng = _rng(seed)
    d = 2 if direction == "bidirectional" else 1
    g = GATES[cell]
    inits = [_init("W", rng.normal(0, .5, (d, g * H, F)).astype(np.float32)),
             _init("R", rng.normal(0, .5, (d, g * H, H)).astype(np.float32)),
             _init("B", rng.normal(0, .5, (d, 2 * g * H)).astype(np.float32))]
    rnn_inputs = ["xt", "W", "R", "B"] + list(extra_inputs)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2], name="to_time_major"),
             helper.make_node(cell, rnn_inputs, ["Y", "Y_h"], hidden_size=H, direction=direction,
                              name="rnn", **(attrs or {}))]
    if readout == "last":   # Y [T, D, 1, H] -> [T, 1, D, H] -> [T, 1, D*H] -> step T-1 -> [1, D*H]
        inits.append(_init("shape", np.array([0, 1, d * H], np.int64)))   # 0: keep T
        inits.append(_init("last", np.array(-1, np.int64)))
        nodes += [helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3], name="dirs_last"),
                  helper.make_node("Reshape", ["Yt", "shape"], ["Ycat"], name="concat_dirs"),
                  helper.make_node("Gather", ["Ycat", "last"], ["feat"], axis=0, name="last_step")]
    else:                   # Y_h [D, 1, H] -> [1, D, H] -> [1, D*H]
        inits.append(_init("flat", np.array([1, d * H], np.int64)))
        nodes += [helper.make_node("Transpose", ["Y_h"], ["Yh_t"], perm=[1, 0, 2], name="state_batch_first"),
                  helper.make_node("Reshape", ["Yh_t", "flat"], ["feat"], name="concat_states")]
    inits += [_init("Wd", rng.normal(0, .5, (d * H, 2)).astype(np.float32)),
              _init("bd", rng.normal(0, .5, (2,)).astype(np.float32))]
    if head == "gemm":
        nodes.append(helper.make_node("Gemm", ["feat", "Wd", "bd"], ["logits"], name="head"))
    else:
        nodes += [helper.make_node("MatMul", ["feat", "Wd"], ["mm"], name="head_matmul"),
                  helper.make_node("Add", ["mm", "bd"], ["logits"], name="head_bias")]
    nodes.append(helper.make_node("Sigmoid", ["logits"], ["y"], name="out"))
    nodes += list(extra_nodes)
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, time_dim, F])]
    graph_inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [d, 1, H])
                     for n in extra_inputs if n.startswith("state_in")]
    outs = outputs or [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, [1, 2])]
    graph = helper.make_graph(nodes, "hand", graph_inputs, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _save(model, folder, name):
    path = folder / f"{name}.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_data")
    x = _rng(1).standard_normal((10, T, F)).astype(np.float32)
    np.savez(folder / "d.npz", x=x, y=x[:, -1, :2])   # the hand-built heads have 2 outputs
    return folder / "d.npz", x


SUPPORTED = {
    "lstm_forward": {},
    "lstm_bidirectional": {"direction": "bidirectional"},
    "lstm_final_state": {"readout": "h_n"},
    "lstm_bidi_final_states": {"direction": "bidirectional", "readout": "h_n"},
    "lstm_matmul_add_head": {"head": "matmul_add"},
    "gru_linear_before_reset": {"cell": "GRU", "attrs": {"linear_before_reset": 1}},
    "gru_reset_before": {"cell": "GRU"},
    "gru_bidirectional": {"cell": "GRU", "direction": "bidirectional", "attrs": {"linear_before_reset": 1}},
    "lstm_explicit_defaults": {"attrs": {"activations": ["Sigmoid", "Tanh", "Tanh"], "input_forget": 0}},
    # h0 / c0 as graph inputs (model(x, (h0, c0))): the rebuild takes x alone, both sides run from zeros
    "lstm_h0_c0_inputs": {"extra_inputs": ["", "state_in_h", "state_in_c"]},
    "gru_bidi_h0_input": {"cell": "GRU", "direction": "bidirectional", "attrs": {"linear_before_reset": 1},
                          "extra_inputs": ["", "state_in_h"]},
}


@pytest.mark.parametrize("case", sorted(SUPPORTED))
def test_hand_built_graphs_rebuild_within_tolerance_of_onnxruntime(case, data, tmp_path):
    path = _save(recurrent_model(**SUPPORTED[case]), tmp_path, case)
    model, fmt = keras_bridge.load_any(path, data_path=data[0])
    assert fmt == "onnx" and keras_bridge.verified_against(model) == "onnxruntime"
    rebuilt = keras_bridge.rebuild_batch1(model)
    assert keras_bridge.verify_same(model, rebuilt, data[1]) <= keras_bridge.REBUILD_TOLERANCE
    # and against onnxruntime run here directly, not through the importer's own runner
    import onnxruntime as ort
    session = ort.InferenceSession(str(path))
    x = data[1]
    states = {i.name: np.zeros([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
              for i in onnx.load(path).graph.input if i.name != "x"}
    theirs = np.concatenate([session.run(None, {"x": x[i:i + 1], **states})[0] for i in range(len(x))])
    ours = np.concatenate([np.asarray(rebuilt(x[i:i + 1])) for i in range(len(x))])
    assert np.max(np.abs(ours - theirs)) <= keras_bridge.REBUILD_TOLERANCE
    assert len(rebuilt.inputs) == 1
    notes = lint_file(path).notes
    assert any("fed as zeros" in n for n in notes) == bool(states), notes


def test_a_wrong_gate_order_would_be_caught():
    """The mapping is not the identity: Keras i, f, c, o from ONNX i, o, f, c, biases summed."""
    w = np.arange(4 * H * F, dtype=np.float32).reshape(4 * H, F)
    r = np.zeros((4 * H, H), np.float32)
    b = np.concatenate([np.arange(4 * H), 100 * np.arange(4 * H)]).astype(np.float32)
    kernel, _, bias = keras_weights("LSTM", w, r, b, H)
    onnx_blocks = [w[i * H:(i + 1) * H] for i in range(4)]                     # i, o, f, c
    assert np.array_equal(kernel.T, np.concatenate([onnx_blocks[k] for k in (0, 2, 3, 1)]))
    assert bias[H] == b[2 * H] + b[4 * H + 2 * H]                                # Keras f = ONNX f
    _, _, gru_bias = keras_weights("GRU", w[:3 * H], r[:3 * H], b[:6 * H], H, linear_before_reset=True)
    assert gru_bias.shape == (2, 3 * H)                                        # reset_after=True


def test_a_dynamic_window_length_is_pinned_by_the_data(data, tmp_path):
    path = _save(recurrent_model(time_dim="seq"), tmp_path, "dynamic")
    model, _ = keras_bridge.load_any(path, data_path=data[0])
    assert keras_bridge.input_shape_of(model) == (T, F)
    assert keras_bridge.verify_same(model, keras_bridge.rebuild_batch1(model), data[1]) <= 1e-5
    report = lint_file(path)      # no data: linted at a stand-in length
    assert report.ok and any("imported from onnx" in n for n in report.notes)


def _csv(folder):
    path = folder / "d.csv"
    rows = ["a,b,c,y"] + [",".join(f"{v:.3f}" for v in r) for r in _rng(2).standard_normal((30, 4))]
    path.write_text("\n".join(rows) + "\n")
    return path


REFUSALS = {
    "clip": ({"attrs": {"clip": 3.0}}, "clip=3.0"),
    "input_forget": ({"attrs": {"input_forget": 1}}, "input_forget=1"),
    "activations": ({"attrs": {"activations": ["HardSigmoid", "Tanh", "Tanh"]}}, "activations"),
    "peephole": ({"extra_inputs": ["", "", "", "P"]}, "peephole"),
    "nonzero_h0": ({"extra_inputs": ["", "h0"]}, "nonzero constant"),
    "state_input_used_as_data": ({"extra_inputs": ["", "state_in_h"], "extra_nodes": [
        helper.make_node("Neg", ["state_in_h"], ["negated"], name="uses_state")]}, "2 graph inputs used as data"),
    "cell_state_readout": (None, "cell state c_n"),
    "unsupported_op": (None, "node 'weird' (Cos): op Cos is outside the supported set"),
    "two_outputs": (None, "2 graph outputs"),
}


def _refused_model(case):
    kwargs, _ = REFUSALS[case]
    if case == "peephole":
        m = recurrent_model(**kwargs)
        m.graph.initializer.append(_init("P", np.ones((1, 3 * H), np.float32)))
        return m
    if case == "nonzero_h0":
        m = recurrent_model(**kwargs)
        m.graph.initializer.append(_init("h0", np.full((1, 1, H), 0.5, np.float32)))
        return m
    if case == "cell_state_readout":
        m = recurrent_model(readout="h_n")
        rnn = next(n for n in m.graph.node if n.name == "rnn")
        rnn.output.append("Y_c")
        next(n for n in m.graph.node if n.name == "state_batch_first").input[0] = "Y_c"
        return m
    if case == "unsupported_op":
        m = recurrent_model()
        node = next(n for n in m.graph.node if n.name == "out")
        node.input[0] = "odd"
        m.graph.node.insert(len(m.graph.node) - 1, helper.make_node("Cos", ["logits"], ["odd"], name="weird"))
        return m
    if case == "two_outputs":
        return recurrent_model(outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2]),
                                        helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, 1, H])])
    return recurrent_model(**kwargs)


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_settings_without_a_faithful_rebuild_are_refused_with_the_reason(case, data, tmp_path):
    path = _save(_refused_model(case), tmp_path, case)
    reason = REFUSALS[case][1]
    report = lint_file(path)
    assert report.refused and reason in f"node '{report.refused[0].layer}' ({report.refused[0].cls}): " \
                                        f"{report.refused[0].reason}", report.format_table()
    assert report.refused[0].verdict == REFUSED
    out = tmp_path / "artifacts" / case
    with pytest.raises(BadInput, match="cannot be rebuilt faithfully") as e:
        pipeline.export_model(path, data[0], out, only=set(), streaming=False)
    assert reason in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_every_unsupported_node_is_named_not_only_the_first(data, tmp_path):
    m = recurrent_model()
    out = next(n for n in m.graph.node if n.name == "out")
    out.input[0] = "odd2"
    m.graph.node.insert(len(m.graph.node) - 1, helper.make_node("Cos", ["logits"], ["odd1"], name="weird_cos"))
    m.graph.node.insert(len(m.graph.node) - 1, helper.make_node("Sin", ["odd1"], ["odd2"], name="weird_sin"))
    m.graph.node.insert(1, helper.make_node("Erf", ["xt"], ["unused"], name="weird_erf"))   # before the LSTM
    path = _save(m, tmp_path, "several")
    rows = {(r.layer, r.cls) for r in lint_file(path).refused}
    assert rows == {("weird_erf", "Erf"), ("weird_cos", "Cos"), ("weird_sin", "Sin")}, rows
    with pytest.raises(BadInput) as e:
        keras_bridge.load_any(path, data_path=data[0])
    line = str(e.value)
    assert "\n" not in line and all(f"'{n}' ({op})" in line for n, op in rows), line


def test_bad_onnx_files_are_one_line_each(data, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x0a\xff\xff" * 20)
    with pytest.raises(BadInput, match="not a readable ONNX file"):
        keras_bridge.load_any(corrupt)
    unchecked = recurrent_model()
    unchecked.graph.node[1].input[0] = "nowhere"      # an input no node produces
    with pytest.raises(BadInput, match="fails onnx.checker"):
        keras_bridge.load_any(_save(unchecked, tmp_path, "unchecked"))
    dynamic = _save(recurrent_model(time_dim="seq"), tmp_path, "dynamic_csv")
    with pytest.raises(BadInput, match="dynamic dimensions .* can pin"):
        pipeline.export_model(dynamic, _csv(tmp_path), tmp_path / "artifacts" / "dyn", only=set())
    assert not (tmp_path / "artifacts").exists()


def test_the_cli_says_one_line_and_exits_2_leaving_artifacts_untouched(data, tmp_path):
    bad = recurrent_model()
    bad.graph.node[1].input[0] = "nowhere"
    path = _save(bad, tmp_path, "bad")
    artifacts = tmp_path / "artifacts"
    (artifacts / "bad").mkdir(parents=True)
    (artifacts / "bad" / "manifest.json").write_text('{"kept": true}')
    run = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--model", str(path), "--data", str(data[0]),
                          "--artifacts-dir", str(artifacts)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    lines = [l for l in run.stderr.splitlines() if l.startswith("edge: error")]
    assert len(lines) == 1 and "fails onnx.checker" in lines[0] and str(path) in lines[0]
    assert (artifacts / "bad" / "manifest.json").read_text() == '{"kept": true}'
    # only the folder's lock file (groundfloor.locks, taken before loading) besides what was there
    assert sorted(p.name for p in (artifacts / "bad").iterdir()) == [".edge.lock", "manifest.json"]


def test_an_onnx_lstm_exports_to_a_fused_int8_lstm(data, tmp_path):
    path = _save(recurrent_model(), tmp_path, "fused")
    manifest = pipeline.export_model(path, data[0], tmp_path / "out", only={"tflite_int8"}, streaming=False,
                                     progress=lambda *_: None)
    assert manifest["source"]["format"] == "onnx"
    assert manifest["source"]["rebuild_verified_against"] == "onnxruntime"
    assert manifest["source"]["rebuild_max_abs_diff"] <= 1e-5
    art = manifest["artifacts"]["tflite_int8"]
    assert art["status"] == "ok" and "UNIDIRECTIONAL_SEQUENCE_LSTM" in art["ops"]
    assert art["quantized"] and art["weight_bytes_by_dtype"].get("int8", 0) >= 4 * H * (F + H)


def test_a_tf2onnx_export_of_a_keras_lstm_comes_back_as_the_same_lstm(tmp_path):
    """tf2onnx writes a Reshape / LSTM / Squeeze / Slice / Squeeze / Gemm graph (measured)."""
    from export.onnx_export import to_onnx
    from tiny_keras import tiny_lstm
    keras_model = tiny_lstm(T, F, H)
    keras_model.save(tmp_path / "k.h5")
    to_onnx(str(tmp_path / "k.h5"), str(tmp_path / "k.onnx"))
    x = _rng(3).standard_normal((6, T, F)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    model, _ = keras_bridge.load_any(tmp_path / "k.onnx", data_path=tmp_path / "d.npz")
    assert [type(l).__name__ for l in model.layers[1:]] == ["LSTM", "Dense"]
    rebuilt = keras_bridge.rebuild_batch1(model)
    assert keras_bridge.verify_same(model, rebuilt, x) <= 1e-5
    ours = np.concatenate([np.asarray(rebuilt(x[i:i + 1])) for i in range(len(x))])
    theirs = np.concatenate([np.asarray(keras_model(x[i:i + 1])) for i in range(len(x))])
    assert np.max(np.abs(ours - theirs)) <= 1e-5


def test_external_data_outside_the_models_folder_is_refused_before_reading(data, tmp_path):
    model = recurrent_model()
    init = next(i for i in model.graph.initializer if i.name == "W")
    init.data_location = TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    init.ClearField("raw_data")
    with pytest.raises(BadInput, match="points outside the directory|outside the model's folder"):
        keras_bridge.load_any(_save(model, tmp_path, "external"), data_path=data[0])


def test_lint_of_a_missing_or_empty_onnx_file_is_one_line(tmp_path):
    with pytest.raises(BadInput, match="model file not found"):
        lint_file(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(BadInput, match="model file is empty"):
        lint_file(tmp_path / "empty.onnx")
