"""The u8s8 saturation check: decided by arithmetic, so it tells a saturating model from a safe
one on any host (VNNI or not), and the toolkit's own dynamic-int8 options never saturate."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.onnx_export import quantize_dynamic_onnx
from export.ort_saturation import check, pair_sums_saturating, worst_case_pairs

K, N, T, H = 16, 4, 5, 8


def test_pair_sums_by_hand():
    a = np.array([[255, 255, 1, 0]], np.uint8)
    w = np.array([[127], [127], [-128], [-128]], np.int8)   # 255*127*2 = 64770 > 32767; -128 fits
    assert pair_sums_saturating(a, w) == (1, 2)
    assert pair_sums_saturating(a // 2, w) == (0, 2)         # 127*127*2 = 32258 fits
    assert worst_case_pairs(w) == (2, 2)                      # 255 * -256 < -32768 too
    assert worst_case_pairs(w // 2) == (0, 2)


def _matmul_model(path, weights):
    """x [1, T, K] -> MatMul(W [K, N]) -> y [1, T, N], float; quantize_dynamic makes MatMulInteger."""
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, N])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def _lstm_model(path, rng, scale):
    w = (rng.standard_normal((1, 4 * H, K)) * scale).astype(np.float32)
    r = (rng.standard_normal((1, 4 * H, H)) * scale).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=H)], "l",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, 1, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, 1, 1, H])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def _signed_dynamic(src, dst):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


@pytest.fixture
def windows():
    x = np.ones((3, 1, T, K), np.float32)
    x[:, :, :, ::4] = -0.1       # a small negative range: most codes land near 255
    return x.reshape(3, T, K)[:, None]


def test_saturating_and_safe_matmul_are_told_apart(tmp_path, windows):
    w = np.full((K, N), 1.0)
    w[:, 1] = np.linspace(-1, 1, K)            # mixed signs: pairs partly cancel
    _matmul_model(tmp_path / "f.onnx", w)
    _signed_dynamic(tmp_path / "f.onnx", tmp_path / "s8.onnx")
    bad = check(tmp_path / "s8.onnx", windows[:, 0])
    row = next(r for r in bad["nodes"] if r["op"] == "MatMulInteger")
    assert bad["at_risk"] and row["basis"].startswith("exact") and row["saturating_pairs"] > 0
    # the same weights, with inputs whose codes stay low: exact pair sums fit
    quiet = np.concatenate([np.full((3, T, 1), 20.0, np.float32), np.zeros((3, T, K - 1), np.float32)], 2)
    assert not check(tmp_path / "s8.onnx", quiet)["at_risk"]
    # the toolkit's options: uint8 MatMul weights, no signed-weight node left to saturate
    quantize_dynamic_onnx(str(tmp_path / "f.onnx"), str(tmp_path / "ours.onnx"))
    ours = check(tmp_path / "ours.onnx", windows[:, 0])
    assert not ours["at_risk"] and not any(r["op"] == "MatMulInteger" for r in ours["nodes"])


def test_dynamic_lstm_worst_case(tmp_path):
    rng = np.random.default_rng(0)
    _lstm_model(tmp_path / "l.onnx", rng, scale=1.0)
    _signed_dynamic(tmp_path / "l.onnx", tmp_path / "s8.onnx")
    signed = check(tmp_path / "s8.onnx")
    assert {r["op"] for r in signed["nodes"]} == {"DynamicQuantizeLSTM"} and signed["at_risk"]
    quantize_dynamic_onnx(str(tmp_path / "l.onnx"), str(tmp_path / "ours.onnx"))
    ours = check(tmp_path / "ours.onnx")
    assert [r["saturating_pairs"] for r in ours["nodes"]] == [0, 0] and not ours["at_risk"]


def _qdq(src, dst, reduce_range, tmp_path, rng):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from export.onnx_export import _WindowReader
    x = rng.uniform(0, 4, (16, T, K)).astype(np.float32)
    quantize_static(str(src), str(dst), _WindowReader("x", x), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, per_channel=False, reduce_range=reduce_range)
    return x


def test_qdq_full_range_weights_are_flagged_and_the_toolkits_qdq_options_are_not(tmp_path):
    """QDQ MatMul runs in the same u8s8 kernel: full-range int8 weights of one sign can saturate
    a pair; the 7-bit weights quantize_qdq_onnx writes cannot."""
    from export.onnx_export import QDQ_REDUCE_RANGE, quantize_qdq_onnx
    rng = np.random.default_rng(3)
    src = tmp_path / "m.onnx"
    _matmul_model(src, rng.uniform(0.5, 1.0, (K, N)))     # every weight near +max: pairs of 127s
    x = _qdq(src, tmp_path / "full.onnx", False, tmp_path, rng)
    full = check(tmp_path / "full.onnx")
    assert full["at_risk"] and any(r["op"] == "QDQ MatMul" for r in full["nodes"])
    np.savez(tmp_path / "calib.npz", x_calib=x)
    quantize_qdq_onnx(str(src), str(tmp_path / "ours.onnx"), str(tmp_path / "calib.npz"))
    ours = check(tmp_path / "ours.onnx")
    assert QDQ_REDUCE_RANGE and not ours["at_risk"]
    assert [r["op"] for r in ours["nodes"]] == ["QDQ MatMul"]      # it did look at the node
