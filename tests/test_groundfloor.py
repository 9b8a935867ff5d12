"""The ground floor: the flatbuffer reader, I/O quantization, the TFLite Micro driver and the
result cache, on the tiny fixture models."""
import numpy as np
import pytest

from groundfloor import cache, fileio, ioquant, tflite_file, tflm
from groundfloor.errors import BadInput
from fixtures_models import F, T, UNITS, tiny_models  # noqa: F401


def test_summary_names_the_fused_lstm_and_int8_io(tiny_models):
    s = tflite_file.summary(tiny_models / "int8.tflite")
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in s["ops"] and s["ops"][-1] == "FULLY_CONNECTED"
    (inp,), (out,) = s["io"]["inputs"], s["io"]["outputs"]
    assert inp["dtype"] == "int8" and inp["shape"] == [1, T, F] and inp["scale"] > 0
    assert out["dtype"] == "int8" and out["shape"] == [1, 1]
    assert s["weight_bytes_by_dtype"]["int8"] >= 4 * UNITS * (F + UNITS)  # 8 gate matrices
    f = tflite_file.summary(tiny_models / "float32.tflite")
    assert f["io"]["inputs"][0]["scale"] is None and "int8" not in f["weight_bytes_by_dtype"]


def test_parse_gives_lstm_weights_with_their_shapes(tiny_models):
    g = tflite_file.parse(tiny_models / "int8.tflite")
    lstm = next(op for op in g.ops if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    w_input = g.t(lstm.inputs[1])
    assert w_input.dtype == "INT8" and w_input.shape == (UNITS, F) and w_input.data.shape == (UNITS, F)
    assert g.t(lstm.inputs[19]).dtype == "INT16"      # the cell state
    assert g.t(lstm.inputs[18]).is_variable           # the hidden state lives in the op


def test_pack_round_trips_and_rewrites_one_tensor(tiny_models, tmp_path):
    model = tflite_file.read(tiny_models / "float32.tflite")
    assert tflite_file.pack(model) == tflite_file.pack(tflite_file.read(None, tflite_file.pack(model)))
    fc = next(op for op in model.subgraphs[0].operators if tflite_file.op_name(model, op) == "FULLY_CONNECTED")
    w = model.subgraphs[0].tensors[fc.inputs[1]]
    before = tflite_file.tensor_data(model, w)
    tflite_file.set_tensor_data(model, w, np.zeros_like(before))
    tflite_file.write(model, tmp_path / "zeroed.tflite")
    again = tflite_file.read(tmp_path / "zeroed.tflite")
    w2 = again.subgraphs[0].tensors[fc.inputs[1]]
    assert np.all(tflite_file.tensor_data(again, w2) == 0) and np.any(before != 0)


@pytest.mark.parametrize("content, problem", [
    (b"", "no TFL3 identifier"), (b"\x00" * 4 + b"ONNX" + b"\x00" * 32, "no TFL3 identifier"),
    (None, "cannot parse"),   # the real file, truncated after its header
])
def test_read_refuses_what_is_not_a_model(tiny_models, tmp_path, content, problem):
    if content is None:
        content = (tiny_models / "int8.tflite").read_bytes()[:64]
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    with pytest.raises(BadInput, match=problem) as e:
        tflite_file.read(p)
    assert str(p) in str(e.value)


def test_ioquant_round_trip_and_clipping():
    io = {"dtype": "int8", "scale": 0.5, "zero_point": -3}
    q = ioquant.quantize_input(np.array([0.0, 1.0, -1.24, 1000.0, -1000.0]), io)
    assert q.dtype == np.int8 and q.tolist() == [-3, -1, -5, 127, -128]
    assert ioquant.dequantize_output(q[:3], io).tolist() == [0.0, 1.0, -1.0]
    f = {"dtype": "float32", "scale": None, "zero_point": None}
    assert ioquant.quantize_input(np.array([1.25]), f).dtype == np.float32
    # the values clipped at the int8 limits: a mask beside the codes, a count for the runtime
    q2, mask = ioquant.quantize_clipped(np.array([0.0, 1.0, -1.24, 1000.0, -1000.0, 66.0]), io)
    assert q2.tolist() == [-3, -1, -5, 127, -128, 127] and mask.tolist() == [False] * 3 + [True, True, True]
    assert ioquant.quantize_counting(np.array([0.0, 1000.0, 64.0]), io)[1] == 1   # 64 / 0.5 - 3 = 125 fits
    assert ioquant.quantize_clipped(np.array([1e6]), f)[1] == 0


def _int8_windows(tiny_models, n):
    """The int8 fixture model and its first n evaluation windows, quantized for its input."""
    path = tiny_models / "int8.tflite"
    io = tflite_file.summary(path)["io"]
    return path, ioquant.quantize_input(np.load(tiny_models / "data.npz")["x_eval"][:n], io["inputs"][0])


def test_tflm_run_equals_litert_within_a_few_codes(tiny_models):
    from ai_edge_litert.interpreter import Interpreter
    path, x = _int8_windows(tiny_models, 6)
    res = tflm.run(path, x, reset_every=1)
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    lite = []
    for w in x:
        it.reset_all_variables()
        it.set_tensor(it.get_input_details()[0]["index"], w[None])
        it.invoke()
        lite.append(it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1))
    diff = np.abs(res["outputs"][0].astype(int) - np.stack(lite).astype(int))
    assert res["outputs"][0].shape == (6, 1) and diff.max() <= 5   # FIELD_NOTES: 1-5 LSB apart
    assert 0 < res["arena_reported"] < res["arena_given"]


def test_tflm_state_carries_without_reset(tiny_models):
    path, x = _int8_windows(tiny_models, 4)
    reset = tflm.run(path, x, reset_every=1)["outputs"][0]
    carried = tflm.run(path, x, reset_every=0)["outputs"][0]
    assert np.array_equal(reset[0], carried[0]) and not np.array_equal(reset[1:], carried[1:])


def test_min_arena_is_exact(tiny_models):
    path = tiny_models / "int8.tflite"
    r = tflm.min_arena(path)
    assert r["largest_failing_bytes"] == r["min_arena_bytes"] - 1
    assert r["min_arena_bytes"] >= r["reported"]["total_bytes"] * 0.5


def test_tflm_failure_is_one_line_not_a_crash(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 8)
    with pytest.raises(RuntimeError, match="TFLite Micro"):
        tflm.run(bad, np.zeros((1, 2), np.int8))


def test_read_json_doc_names_the_document_and_its_table(tmp_path):
    p = tmp_path / "doc.json"
    p.write_text("{half")
    with pytest.raises(BadInput, match="manifest is not valid JSON") as e:
        fileio.read_json_doc(p, "manifest")
    assert str(p) in str(e.value)
    p.write_text('{"artifacts": []}')
    assert fileio.read_json_doc(p, "manifest") == {"artifacts": []}
    with pytest.raises(BadInput, match=r"bench results have no 'artifacts' table \(re-run"):
        fileio.read_json_doc(p, "bench results", "artifacts", " (re-run)", plural=True)
    with pytest.raises(BadInput, match="manifest has no 'artifacts' table$"):
        fileio.read_json_doc(p, "manifest", "artifacts")
    p.write_text('{"artifacts": {"a": 1}}')
    assert fileio.read_json_doc(p, "manifest", "artifacts") == {"artifacts": {"a": 1}}


def test_cache_hit_miss_and_corrupt_entry(tmp_path):
    c = cache.ResultCache(tmp_path)
    k = cache.key_of({"b": 1, "a": 2}, "x")
    assert k == cache.key_of({"a": 2, "b": 1}, "x") and k != cache.key_of({"a": 2, "b": 1}, "y")
    assert c.get("arena", k) is None
    c.put("arena", k, {"v": 1})
    assert c.get("arena", k) == {"v": 1}
    assert c.get("arena", k, valid=lambda v: v["v"] == 2) is None
    c.path("arena", k).write_text("{half")
    assert c.get("arena", k) is None
    assert cache.ResultCache(None).get("arena", k) is None


def test_cache_isolated_runs_once(tmp_path):
    c = cache.ResultCache(tmp_path)
    value, rec = c.isolated("len", "k1", "groundfloor.cache:key_of", {}, timeout=60)
    assert rec["cached"] is False and isinstance(value, str)
    again, rec2 = c.isolated("len", "k1", "groundfloor.cache:key_of", {}, timeout=60)
    assert rec2["cached"] is True and again == value


def test_code_hash_follows_the_bytes(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("x = 1\n")
    h1 = cache.code_hash([a], ["tool 1.0"])
    assert h1 == cache.code_hash([a], ["tool 1.0"]) and h1 != cache.code_hash([a], ["tool 1.1"])
    a.write_text("x = 2\n")
    assert cache.code_hash([a], ["tool 1.0"]) != h1
