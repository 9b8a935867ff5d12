"""Would onnxruntime's x86 u8s8 int8 kernels saturate on this ONNX artifact?

On x86 without VNNI, onnxruntime (MLAS) multiplies uint8 activations by int8 weights with
VPMADDUBSW, which adds each adjacent pair of products along the reduction axis into a
saturating int16. When a_k * w_k + a_(k+1) * w_(k+1) leaves [-32768, 32767] the sum is clipped
and the output is wrong; VNNI hosts, ARM and uint8 weights (u8u8 kernels) add in int32 and are
exact. So the same file is accurate on one host and wrong on another.

This module decides it by arithmetic, the same on every host:
- MatMulInteger with int8 weights: the exact uint8 activations on the given inputs (exposed as
  graph outputs and read back from onnxruntime), every adjacent pair of products counted;
- DynamicQuantizeLSTM (its activations stay inside the op): the worst case, activations 255,
  i.e. the weight pairs that can saturate for some input;
- QDQ MatMul / Gemm whose weight is DequantizeLinear of an int8 constant (onnxruntime fuses the
  pattern into the same u8s8 kernel, int8 activations shifted to uint8): the worst case.

    check(path, x) -> {"at_risk": bool, "nodes": [...], "rule": ...}
"""
from __future__ import annotations

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
U8_MAX = 255
RULE = ("x86 without VNNI: uint8 activation x int8 weight products are added in adjacent pairs "
        "into a saturating int16 (VPMADDUBSW); a pair outside [-32768, 32767] is clipped")


def pair_sums_saturating(a_u8: np.ndarray, w_s8: np.ndarray) -> tuple[int, int]:
    """(saturating pair sums, all pair sums) of a [M, K] uint8 times w [K, N] int8, pairs taken
    along K as (0, 1), (2, 3), ... (an odd K pads with a zero)."""
    a = np.asarray(a_u8, np.int64).reshape(-1, a_u8.shape[-1])
    w = np.asarray(w_s8, np.int64)
    if a.shape[1] % 2:
        a = np.pad(a, ((0, 0), (0, 1)))
        w = np.pad(w, ((0, 1), (0, 0)))
    prod = a[:, :, None] * w[None, :, :]                  # [M, K, N]
    pairs = prod[:, 0::2, :] + prod[:, 1::2, :]           # [M, K/2, N]
    bad = int(np.count_nonzero((pairs > INT16_MAX) | (pairs < INT16_MIN)))
    return bad, int(pairs.size)


def worst_case_pairs(w_s8: np.ndarray) -> tuple[int, int]:
    """Weight pairs [K, N] int8 that saturate for some uint8 input (activations 0 or 255)."""
    w = np.asarray(w_s8, np.int64)
    if w.shape[0] % 2:
        w = np.pad(w, ((0, 1), (0, 0)))
    pos = np.maximum(w[0::2], 0) + np.maximum(w[1::2], 0)
    neg = np.minimum(w[0::2], 0) + np.minimum(w[1::2], 0)
    bad = (U8_MAX * pos > INT16_MAX) | (U8_MAX * neg < INT16_MIN)
    return int(np.count_nonzero(bad)), int(bad.size)


def _initializers(model) -> dict:
    from onnx import numpy_helper
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _lstm_rows(node, inits) -> list[dict]:
    """W [dirs, 4H, in] and R [dirs, 4H, H] as int8 initializers (DynamicQuantizeLSTM keeps them
    [dirs, in, 4H]: the reduction axis first after the direction)."""
    rows = []
    for label, name in (("W", node.input[1]), ("R", node.input[2])):
        w = inits.get(name)
        if w is None or w.dtype != np.int8:
            continue
        bad = total = 0
        for d in range(w.shape[0]):
            b, t = worst_case_pairs(w[d])
            bad, total = bad + b, total + t
        rows.append({"node": node.name or node.op_type, "op": node.op_type, "weights": label,
                     "basis": "worst case (activations stay inside the op)",
                     "saturating_pairs": bad, "pairs": total})
    return rows


def _matmul_nodes(model, inits):
    """MatMulInteger nodes whose B is a constant int8 weight: (node, activation name, weights)."""
    for node in model.graph.node:
        if node.op_type == "MatMulInteger" and node.input[1] in inits:
            w = inits[node.input[1]]
            if w.dtype == np.int8:
                yield node, node.input[0], w


def _qdq_weights(model, inits):
    """MatMul / Gemm nodes whose weight input is DequantizeLinear(int8 constant): (node, [K, N])."""
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in dq:
            continue
        w = inits.get(dq[node.input[1]].input[0])
        if w is None or w.dtype != np.int8 or w.ndim != 2:
            continue
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        yield node, w.T if trans_b else w


def _activations(path, model, names, x) -> dict:
    """The named uint8 tensors on each window of x, read back as extra graph outputs."""
    import onnx
    import onnxruntime as ort
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    got = {n: [] for n in names}
    for w in np.asarray(x, np.float32):
        outs = sess.run(names, {inp: w[None]})
        for n, v in zip(names, outs):
            got[n].append(v.reshape(-1, v.shape[-1]))
    return {n: np.concatenate(v) for n, v in got.items()}


def check(path, x=None) -> dict:
    """Saturation of the u8s8 pair sums for one ONNX file on the windows x ([N, T, F] floats)."""
    import onnx
    model = onnx.load(str(path))
    inits = _initializers(model)
    rows = []
    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeLSTM":
            rows += _lstm_rows(node, inits)
    matmuls = list(_matmul_nodes(model, inits))
    acts = _activations(path, model, sorted({a for _, a, _ in matmuls}), x) if matmuls and x is not None else {}
    for node, act, w in matmuls:
        if act in acts:
            bad, total = pair_sums_saturating(acts[act], w)
            basis = f"exact, on {len(x)} windows"
        else:
            bad, total = worst_case_pairs(w)
            basis = "worst case (no inputs given)"
        rows.append({"node": node.name or node.op_type, "op": node.op_type, "weights": "B",
                     "basis": basis, "saturating_pairs": bad, "pairs": total})
    for node, w in _qdq_weights(model, inits):
        bad, total = worst_case_pairs(w)
        rows.append({"node": node.name or node.op_type, "op": f"QDQ {node.op_type}", "weights": "B",
                     "basis": "worst case (the activations are quantized inside the fused kernel)",
                     "saturating_pairs": bad, "pairs": total})
    at_risk = any(r["saturating_pairs"] for r in rows)
    return {"at_risk": at_risk, "nodes": rows, "rule": RULE,
            "signed_weight_nodes": len(rows)}
