"""Keras (tf-keras) to ONNX with tf2onnx, then onnxruntime's quantizers.

tf2onnx emits a real ONNX `LSTM` op from a tf-keras fused LSTM (a Keras 3 model gives a
`Loop`). Dynamic quantization turns it into com.microsoft `DynamicQuantizeLSTM`; static
QDQ quantization never quantizes LSTM in onnxruntime, only the Gemm/MatMul around it.
"""
import re
import time
from pathlib import Path

import numpy as np

from groundfloor import seal
from groundfloor.fileio import temp_path_for

OPSET = 17  # tf2onnx 1.17 supports up to 18; 17 is what onnxruntime's quantizer knows best


_GENERATED = re.compile(r"^(.*)__(\d+)(:\d+)?$")


def canonical_names(proto) -> int:
    """Renumber the names tf2onnx generates ("const_axes__42") in order of first use, so the same
    model converts to the same bytes: tf2onnx numbers them with a process-wide counter whose
    values moved between runs (const_fold_opt__44 / __45), in fresh processes too. Only
    top-level graphs; returns how many names were renumbered."""
    g = proto.graph
    _initializers_in_use_order(g)
    if any(a.type in (a.GRAPH, a.GRAPHS) for n in g.node for a in n.attribute):
        return 0   # Loop / If bodies: leave the names alone
    order = [i.name for i in g.input] + [x for n in g.node for x in list(n.input) + list(n.output)]
    order += [i.name for i in g.initializer] + [n.name for n in g.node]
    mapping, counter = {}, 0
    for name in order:
        m = _GENERATED.match(name)
        if m and name not in mapping:
            counter += 1
            mapping[name] = f"{m.group(1)}__{counter}{m.group(3) or ''}"
    if not mapping:
        return 0
    rename = lambda name: mapping.get(name, name)
    for n in g.node:
        n.name = rename(n.name)
        n.input[:] = [rename(x) for x in n.input]
        n.output[:] = [rename(x) for x in n.output]
    for coll in (g.initializer, g.input, g.output, g.value_info):
        for item in coll:
            item.name = rename(item.name)
    return len(mapping)


def _initializers_in_use_order(g):
    """Initializers in the order the nodes first read them: tf2onnx lists them in an order that
    changed between runs of the same conversion (a stacked LSTM's, in fresh processes too)."""
    first_use = {}
    for k, name in enumerate(x for n in g.node for x in n.input):
        first_use.setdefault(name, k)
    ordered = sorted(g.initializer, key=lambda t: (first_use.get(t.name, len(first_use)), t.name))
    g.ClearField("initializer")
    g.initializer.extend(ordered)


def from_keras(model, signature, out_path, opset: int = OPSET):
    """tf2onnx.convert.from_keras to out_path (atomically) with canonical generated names."""
    import onnx
    import tf2onnx
    tmp = temp_path_for(out_path)
    try:
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset, output_path=str(tmp))
        proto = onnx.load(str(tmp))
        canonical_names(proto)
        seal.write_model(out_path, proto.SerializeToString())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return proto


def to_onnx(model_path: str, out_path: str, opset: int = OPSET) -> dict:
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    model = tf_keras.models.load_model(model_path, compile=False)
    start = time.perf_counter()
    spec = (tf.TensorSpec(model.inputs[0].shape, tf.float32, name="input"),)
    from_keras(model, spec, out_path, opset)
    return {"seconds": time.perf_counter() - start,
            "options": {"opset": opset, "converter": "tf2onnx", "names": "generated names renumbered"}}


# onnxruntime's u8s8 kernels on x86 without VNNI add adjacent pairs of uint8 x int8 products
# in a saturating int16 (VPMADDUBSW): the signed-weight Dense head of the reference models
# saturated on 75-89 pair sums per 100 windows and drifted 10x on such hosts, while VNNI hosts
# and ARM were exact (FIELD_NOTES, December 2026; export/ort_saturation.py checks a file).
# So: uint8 weights where the quantizer allows them (MatMul -> u8u8 kernels, exact everywhere)
# and 7-bit weights (reduce_range) for DynamicQuantizeLSTM, which keeps int8 weights: with
# |w| <= 64 no pair can leave int16 (255 * 128 = 32640 < 32767). Measured drift cost: none on seattle
# (0.047 vs 0.060 degF), +0.005 GW on victoria, +0.003 on the classifier's probabilities.
DYNAMIC_OPTIONS = {"weight_type": "QUInt8", "reduce_range": True}


def quantize_dynamic_onnx(src: str, out_path: str) -> dict:
    """onnxruntime dynamic quantization (LSTM -> DynamicQuantizeLSTM), keeping metadata_props."""
    import logging
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    start = time.perf_counter()
    metadata = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    tmp = temp_path_for(out_path)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice does not apply to LSTM
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=getattr(QuantType, DYNAMIC_OPTIONS["weight_type"]),
                         reduce_range=DYNAMIC_OPTIONS["reduce_range"])
    finally:
        root.setLevel(level)
    if metadata:  # the quantizer drops metadata_props (the streaming state layout lives there)
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(tmp))
    seal.write_model(out_path, Path(tmp).read_bytes())
    Path(tmp).unlink(missing_ok=True)
    return {"seconds": time.perf_counter() - start,
            "options": {"quantizer": "onnxruntime.quantize_dynamic", **DYNAMIC_OPTIONS,
                        "why": "no uint8 x int8 pair sum can saturate int16 on any host (uint8 "
                               "MatMul weights, 7-bit LSTM weights)"}}


class _WindowReader:
    """Feeds calibration windows one at a time (batch 1, as the model was exported)."""

    def __init__(self, input_name, x):
        self._it = iter([{input_name: w[None].astype(np.float32)} for w in x])

    def get_next(self):
        return next(self._it, None)


# 7-bit weights: onnxruntime fuses QDQ MatMul into the u8s8 kernel, whose int16 pair sums
# saturated on AVX2 hosts without VNNI with full-range int8 weights (measured under emulated
# Haswell: seattle_temp task RMSE +40 %, victoria_demand x5.6; FIELD_NOTES)
QDQ_REDUCE_RANGE = True


def quantize_qdq_onnx(src: str, out_path: str, calib_path: str, calib_key: str = "x_calib",
                      calib_samples: int | None = 100) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    start = time.perf_counter()
    x = np.load(calib_path)[calib_key]
    if calib_samples:
        x = x[:calib_samples]
    input_name = onnx.load(src).graph.input[0].name
    tmp = temp_path_for(out_path)
    quantize_static(src, str(tmp), _WindowReader(input_name, x), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, per_channel=False,
                    reduce_range=QDQ_REDUCE_RANGE)
    seal.write_model(out_path, Path(tmp).read_bytes())
    Path(tmp).unlink(missing_ok=True)
    # The calibrator leaves an augmented model next to the working directory on some versions.
    Path("augmented_model.onnx").unlink(missing_ok=True)
    return {"seconds": time.perf_counter() - start,
            "options": {"quantizer": "onnxruntime.quantize_static", "format": "QDQ",
                        "calibration": "MinMax", "calibration_windows": int(len(x)),
                        "reduce_range": QDQ_REDUCE_RANGE,
                        "note": "onnxruntime does not statically quantize LSTM: the LSTM stays float, only the layers around it are int8"}}
