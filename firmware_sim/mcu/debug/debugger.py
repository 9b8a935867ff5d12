"""The drift debugger's entry point, debug(): every view on the same windows, in one report.

    report = debug("source_tfkeras.h5", "model_int8.tflite", x_eval, y_eval=y_eval)
    print(report["text"])

Views of the same int8 file, on the same evaluation windows:

1. The integer reference (firmware_sim.mcu.reference, bit-exact with TFLite Micro: the
   int8x8_16 fused LSTM with TFLM's fixed-point sigmoid/tanh tables, the int8 fully
   connected op, softmax), run on the quantized input with its per-step capture switched on.
   It yields every gate output i, f, g, o (int16 Q0.15, with the Q3.12 pre-activations), the
   int16 cell state and the int8 hidden state per step, and every op output.
2. The runtimes, to check the reference: TFLite Micro (in a child process, on a copy of the
   file whose graph outputs also list each op's output, so the hidden sequence is visible)
   and LiteRT with experimental_preserve_all_tensors. The fraction of codes equal to each is
   reported ("reference_check", "agreement"): the reference is meant to equal TFLite Micro
   exactly; LiteRT's int8 LSTM kernel is a different implementation (its codes are 1-2 LSB
   apart now and then).
   The runtime drift figures ("runtime") are LiteRT's, plus TFLite Micro's when it ran.
3. A float emulation of the Keras model in which single quantization points can be switched
   on (fake-quantized with the file's own scales): the input, the weights, each gate, the
   cell state, the hidden state, the output layer. The output drift with one point on tells
   how much of the drift that point explains; with all points but one, how much keeping it
   at higher precision would remove.

Plus the clipping report: inputs outside the int8 input range, float outputs and targets
outside the int8 output range (the Seattle failure), hidden and cell values outside theirs.

Supported graphs: a chain of tf-keras LSTM (tanh/sigmoid, no peephole/projection) and Dense
layers (with Dropout/InputLayer), converted to UNIDIRECTIONAL_SEQUENCE_LSTM, STRIDED_SLICE,
FULLY_CONNECTED and optional SOFTMAX (what firmware_sim.mcu lowers). Anything else is
reported as unsupported for the per-gate views; the runtime and clipping views still work.
"""
import numpy as np

from firmware_sim.mcu.lower import lower
from firmware_sim.mcu.quant import quantize_input
from firmware_sim.mcu.tflite_model import check, load
from groundfloor.errors import BadInput

from .agreement import check_runtimes, run_reference, tracked_tensors
from .attribution import annotate, attribute, emulation_summary
from .clipping import clipping_report
from .figures import rmse
from .floatmodel import UnsupportedModel, emulate, keras_chain, map_chain
from .runtimes import litert_figures, run_litert, run_tflm, tflm_figures
from .tensors import tensor_table
from .text import format_report, verdict


def read_graph(path):
    """The int8 file's tensors and ops (groundfloor.tflite_file.Graph), unsupported ops allowed."""
    return load(path, check_supported=False)


def _float_model(model_h5, graph, notes):
    """(Keras model, chain mapped onto the graph, why there is no chain, lowered program);
    what is unavailable is None, with a note."""
    from export.tfenv import tf_and_keras2
    chain, chain_error, model, prog = None, None, None, None
    try:
        tf, tf_keras = tf_and_keras2()
        model = tf_keras.models.load_model(str(model_h5), compile=False)
        chain = map_chain(keras_chain(model), graph)
    except (UnsupportedModel, ValueError) as e:
        chain_error = str(e)
        notes.append(f"per-gate views unavailable: {e}")
    if chain is not None:
        try:
            check(graph)
            prog = lower(graph)
        except (BadInput, UnsupportedModel, ValueError) as e:
            notes.append(f"per-gate views unavailable: the integer reference cannot run "
                         f"this graph: {e}")
    return model, chain, chain_error, prog


def _float_outputs(model_h5, model, chain, chain_error, x, y_float):
    """The float outputs [N, k]: given, else the emulation's (no point on), else Keras'."""
    if y_float is None:
        if chain is None:
            if model is None:
                raise BadInput(model_h5, f"cannot load the float model ({chain_error}); pass y_float")
            y_float = model.predict(x, batch_size=1, verbose=0)
        else:
            y_float = emulate(chain, x)
    return np.asarray(y_float, np.float64)[:len(x)].reshape(len(x), -1)


def _tflm_view(int8_tflite, x_raw, graph, keep, rt, y_float, y_true, u, report):
    """TFLite Micro's codes (None when it cannot run, with a note) and its drift figures."""
    tm = run_tflm(int8_tflite, x_raw, graph, keep=keep)
    if "error" in tm:
        report["notes"].append(f"TFLite Micro check skipped: {tm['error']}")
        return None
    report["runtime"].update(tflm_figures(tm, graph, rt, y_float, y_true, u))
    return tm


def _per_layer(chain, prog, graph, x, x_raw, rt, tm, y_float, runtime_drift, u, check_samples):
    """The per-gate views: the tensor table, the reference check and the attribution."""
    n = min(check_samples, len(x))
    _, fcap = emulate(chain, x, capture=True)
    tracked, labels = tracked_tensors(chain, graph)
    ref, codes = run_reference(prog, x_raw[:n], tracked)
    runtimes = [("LiteRT", {**rt["kept"], **{graph.outputs[0]: rt["out_raw"]}})]
    if tm is not None:
        runtimes.insert(0, ("TFLite Micro", tm))
    checks, agreement = check_runtimes(codes, tracked, labels, graph, runtimes, n)
    tensors = tensor_table(chain, prog, x, x_raw, fcap, ref, codes, n, u)
    attribution, emu_drift = attribute(chain, x, y_float, u)
    annotate(tensors, attribution)
    return {"tensors": tensors, "attribution": attribution, "reference_check": checks,
            "agreement": agreement, "emulation": emulation_summary(emu_drift, runtime_drift, u)}


def debug(model_h5, int8_tflite, x_eval, y_eval=None, y_float=None, units=None,
          max_samples: int = 2000, check_samples: int = 300, tflm: bool = True) -> dict:
    """Where the int8 error enters. Returns a JSON-able dict; its "text" is a readable table.

    units: optional (scale, offset) turning model output units into physical units for the
    drift figures and the clipping edges (e.g. (std, mean) of a standardized target).
    check_samples: windows the integer reference runs on (it steps in numpy, ~25 ms a window
    for 48 steps of 32 units): the per-gate/cell/hidden errors and the runtime check use them.
    tflm: also run TFLite Micro (a child process) to check the reference code for code.
    """
    x = np.asarray(x_eval, np.float32)[:max_samples]
    y_true = None if y_eval is None else np.asarray(y_eval, np.float64)[:len(x)].reshape(len(x), -1)
    graph = read_graph(int8_tflite)
    u = float(units[0]) if units else 1.0
    report = {"model": str(model_h5), "int8": str(int8_tflite), "samples": int(len(x)),
              "units_scale": u, "notes": []}
    model, chain, chain_error, prog = _float_model(model_h5, graph, report["notes"])
    y_float = _float_outputs(model_h5, model, chain, chain_error, x, y_float)

    keep = sorted({layer["q"]["op"].outputs[0] for layer in chain}) if chain is not None else []
    x_raw = quantize_input(graph, x).reshape(x.shape)
    rt = run_litert(int8_tflite, x_raw, graph, keep=keep)
    y_int8 = rt["out"].reshape(len(x), -1)
    report["runtime"] = litert_figures(y_int8, y_float, y_true, u)
    tm = _tflm_view(int8_tflite, x_raw, graph, keep, rt, y_float, y_true, u, report) if tflm else None
    report["clipping"] = clipping_report(graph, x, y_float, y_true, units)

    if chain is not None and prog is not None:
        report.update(_per_layer(chain, prog, graph, x, x_raw, rt, tm, y_float,
                                 rmse(y_int8, y_float), u, check_samples))
    report["verdict"] = verdict(report)
    report["text"] = format_report(report)
    return report
