"""export/onnx_export.py: a tf-keras LSTM becomes an ONNX `LSTM` op; onnxruntime's dynamic
quantization turns it into DynamicQuantizeLSTM and keeps the model's metadata_props (the
streaming state layout lives there). weight_type QUInt8 gives the Dense (MatMulInteger)
unsigned weights; onnxruntime 1.31's LSTM quantizer writes the LSTM's own W and R as signed
int8 whatever weight_type says (onnxruntime/quantization/operators/lstm.py), so reduce_range
keeps them to 7 bits (export/onnx_export.py says why)."""
import numpy as np
import pytest

from export import onnx_export
from groundfloor import seal
from export_helpers import onnxruntime_outputs
from tiny_keras import tiny_lstm_saved


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root, model = tiny_lstm_saved(tmp_path_factory, "onnx", steps=8, features=2, units=4)
    x = np.random.default_rng(0).standard_normal((5, *model.input_shape[1:])).astype(np.float32)
    y = model.predict(x, batch_size=1, verbose=0)
    rec = onnx_export.to_onnx(str(root / "tiny.h5"), str(root / "float32.onnx"))
    return root, x, y, rec


def test_to_onnx_emits_an_lstm_op(tiny):
    import onnx
    root, x, y, rec = tiny
    proto = onnx.load(str(root / "float32.onnx"))
    ops = [n.op_type for n in proto.graph.node]
    assert "LSTM" in ops and "Loop" not in ops
    assert rec["options"] == {"opset": onnx_export.OPSET, "converter": "tf2onnx", "names": "generated names renumbered"}
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == onnx_export.OPSET
    assert np.max(np.abs(onnxruntime_outputs(root / "float32.onnx", x) - y)) <= 1e-5


def test_dynamic_quantization_gives_8bit_weights_and_keeps_metadata(tiny):
    import onnx
    from onnx import numpy_helper
    root, x, y, _ = tiny
    src, dst = root / "with_meta.onnx", root / "dynamic_int8.onnx"
    proto = onnx.load(str(root / "float32.onnx"))
    onnx.helper.set_model_props(proto, {"lstm_edge.stream": '{"state": []}', "note": "kept"})
    onnx.save(proto, str(src))
    rec = onnx_export.quantize_dynamic_onnx(str(src), str(dst))
    q = onnx.load(str(dst))
    lstm = [n for n in q.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    assert len(lstm) == 1 and lstm[0].domain == "com.microsoft"
    assert "LSTM" not in [n.op_type for n in q.graph.node]
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    w, r = inits[lstm[0].input[1]], inits[lstm[0].input[2]]  # X, W, R, ...
    assert w.dtype == np.int8 and r.dtype == np.int8  # the LSTM quantizer's own choice ...
    wmax = max(np.abs(w.astype(int)).max(), np.abs(r.astype(int)).max())
    assert 32 < wmax <= 64 and 2 * 255 * wmax < 2 ** 15  # ... in 7 bits: no uint8 x int8 pair sum saturates
    mm = [n for n in q.graph.node if n.op_type == "MatMulInteger"]
    assert len(mm) == 1 and inits[mm[0].input[1]].dtype == np.uint8  # the Dense: weight_type QUInt8
    assert rec["options"]["weight_type"] == "QUInt8" and rec["options"]["reduce_range"] is True
    props = {p.key: p.value for p in q.metadata_props}
    assert props.pop("lstm_edge.sha256") and seal.check(dst)   # sealed as written
    assert props == {"lstm_edge.stream": '{"state": []}', "note": "kept"}
    err = np.abs(onnxruntime_outputs(dst, x) - y)
    assert 0 < err.max() < 0.1 * max(float(np.ptp(y)), 1e-3) + 0.02  # 8-bit weights: close, not equal


def test_generated_names_are_renumbered_in_order_of_use():
    """tf2onnx's counter moved between runs (const_fold_opt__44 / __45): renumbered, the same
    model gives the same names, and every reference follows the rename."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "c__44"], ["y__45"], name="Add__46"),
         helper.make_node("Relu", ["y__45"], ["out"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.ones(1, np.float32), "c__44")])
    m = helper.make_model(g)
    assert onnx_export.canonical_names(m) == 3
    assert [i.name for i in m.graph.initializer] == ["c__1"]
    assert list(m.graph.node[0].input) == ["x", "c__1"] and list(m.graph.node[1].input) == ["y__2"]
    assert m.graph.node[0].name == "Add__3" and m.graph.node[1].name == "relu"


def test_initializers_are_listed_in_the_order_the_nodes_read_them():
    """tf2onnx listed a stacked LSTM's initializers in an order that changed between runs:
    any listing order of the same graph serializes to the same bytes."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    consts = [numpy_helper.from_array(np.full(1, k, np.float32), name) for k, name in
              enumerate(["b__7", "a__3", "unused"])]

    def model(inits):
        g = helper.make_graph(
            [helper.make_node("Add", ["x", "a__3"], ["y"]), helper.make_node("Mul", ["y", "b__7"], ["out"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])], inits)
        m = helper.make_model(g)
        onnx_export.canonical_names(m)
        return m
    a, b = model(consts), model(consts[::-1])
    assert [i.name for i in a.graph.initializer] == ["a__1", "b__2", "unused"]
    assert a.SerializeToString() == b.SerializeToString()
