"""Int8 files whose codes are read with other quantization than they were written with: the
check the export runs on every TFLite file, and the rewrite the int8 conversion applies.

Why: the integer UNIDIRECTIONAL_SEQUENCE_LSTM kernels (8-bit activations, 16-bit cell) never
rescale the hidden state on its way out. Each step's h is written as int8 codes into the
output_state variable (input 18) and those same codes are copied into the output tensor; the
recurrent matmuls read them back with output_state's scale and zero point (LiteRT writes them
with the effective_hidden_scale intermediate's, TFLite Micro with output_state's). So the three
(output_state, the hidden intermediate, output) must carry one quantization, which the converter
does for a lone LSTM. Behind a Bidirectional layer it does not: the CONCATENATION's parameters are
propagated back onto the LSTMs' outputs (and onto a REVERSE_V2's output, not its input) while the
state tensors keep their own calibration, so the next layer reads every code at the wrong scale
(tests/test_bidirectional_int8.py: median drift 0.04-0.1 instead of 0.002).

The rewrite gives each LSTM's output and hidden intermediate its output_state's calibrated
quantization, and requantizes (an int8 -> int8 QUANTIZE op) wherever codes would otherwise
reach an op that moves them without rescaling (CODE_MOVERS) or a consumer calibrated for other
parameters; every other tensor keeps the parameters the converter gave it.
"""
from __future__ import annotations

import numpy as np

from groundfloor import tflite_file
from groundfloor.errors import BadInput

LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
OUTPUT_STATE_INPUT = 18    # the hidden-state variable tensor among the op's inputs
HIDDEN_INTERMEDIATE = 4    # effective_hidden_scale_intermediate, the 5th of the 8x8_16 kernel's
_INT8 = 9                  # schema.fbs TensorType.INT8
# int8 ops that move codes without rescaling them (-> the data inputs; None: every input), so
# their inputs must carry their output's quantization (LiteRT's REVERSE_V2 does not check it)
CODE_MOVERS = {"REVERSE_V2": (0,), "STRIDED_SLICE": (0,), "SLICE": (0,), "RESHAPE": (0,), "SQUEEZE": (0,),
               "EXPAND_DIMS": (0,), "TRANSPOSE": (0,), "CONCATENATION": None}
QUANTIZE_VERSION = 2       # int8 -> int8 requantize (TFLite's op versioning)


class QuantMismatch(ValueError):
    """An int8 file where codes are read with other parameters than they were written with."""


def _qkey(t):
    """(scale, zero point) of a per-tensor quantized tensor, or None."""
    scale, zp = tflite_file.qparams(t)
    return None if scale is None else (float(np.float32(scale[0])), int(zp[0]))


def _hidden_tensors(op, g) -> dict:
    """The tensors that hold the hidden state's int8 codes, by role (those that exist, are int8
    and quantized)."""
    roles = {"output": op.outputs[0], "output_state": op.inputs[OUTPUT_STATE_INPUT]}
    inter = list(op.intermediates) if op.intermediates is not None else []
    if len(inter) > HIDDEN_INTERMEDIATE:
        roles["hidden_intermediate"] = inter[HIDDEN_INTERMEDIATE]
    return {role: i for role, i in roles.items()
            if i >= 0 and g.tensors[i].type == _INT8 and _qkey(g.tensors[i]) is not None}


def _int8_lstms(model):
    """(subgraph index, op index, op, its hidden tensors) for each int8 fused LSTM."""
    names = tflite_file.builtin_names()
    for s, g in enumerate(model.subgraphs):
        for k, op in enumerate(g.operators or []):
            if tflite_file.op_name(model, op, names) == LSTM:
                hidden = _hidden_tensors(op, g)
                if "output_state" in hidden and "output" in hidden:
                    yield s, k, op, hidden


def _lstm_mismatches(model) -> list[str]:
    lines = []
    for s, k, op, hidden in _int8_lstms(model):
        g = model.subgraphs[s]
        keys = {role: _qkey(g.tensors[i]) for role, i in hidden.items()}
        if len(set(keys.values())) > 1:
            parts = ", ".join(f"{role} scale {q[0]:.6g} zero point {q[1]}" for role, q in keys.items())
            lines.append(f"int8 {LSTM} op {k}{_in_subgraph(s)} '{tflite_file.tensor_name(g.tensors[op.outputs[0]])}'"
                         f": hidden-state quantization differs ({parts}); the kernel copies the state's "
                         "codes into the output, so they are read with the wrong scale")
    return lines


def _code_movers(model):
    """(subgraph, op index, op, name, [(input slot, its key)] that differ from the output's, output key)
    for each int8 op that moves codes without rescaling them."""
    names = tflite_file.builtin_names()
    for s, g in enumerate(model.subgraphs):
        for k, op in enumerate(g.operators or []):
            name = tflite_file.op_name(model, op, names)
            if name not in CODE_MOVERS or not op.outputs or g.tensors[op.outputs[0]].type != _INT8:
                continue
            out_key = _qkey(g.tensors[op.outputs[0]])
            slots = CODE_MOVERS[name] or range(len(op.inputs))
            differ = [(j, _qkey(g.tensors[op.inputs[j]])) for j in slots
                      if j < len(op.inputs) and op.inputs[j] >= 0 and g.tensors[op.inputs[j]].type == _INT8
                      and not tflite_file.has_data(model, g.tensors[op.inputs[j]])
                      and _qkey(g.tensors[op.inputs[j]]) not in (None, out_key)]
            if out_key is not None and differ:
                yield s, k, op, name, differ, out_key


def _mover_mismatches(model) -> list[str]:
    lines = []
    for s, k, op, name, differ, out_key in _code_movers(model):
        g = model.subgraphs[s]
        j, key = differ[0]
        lines.append(f"int8 {name} op {k}{_in_subgraph(s)} '{tflite_file.tensor_name(g.tensors[op.outputs[0]])}'"
                     f": input {j} scale {key[0]:.6g} zero point {key[1]} but output scale {out_key[0]:.6g} "
                     f"zero point {out_key[1]}; the op moves codes without rescaling them")
    return lines


def _in_subgraph(s) -> str:
    return "" if s == 0 else f" (subgraph {s})"


def mismatches(model) -> list[str]:
    """One line per int8 fused LSTM whose output, output_state and hidden intermediate do not
    share one quantization, and per int8 code-moving op (CODE_MOVERS) whose input and output do
    not; empty for a consistent file."""
    return _lstm_mismatches(model) + _mover_mismatches(model)


def _quantize_opcode(model) -> int:
    """Index of a QUANTIZE operator code, added when the model has none."""
    s = tflite_file.schema()
    code = s.BuiltinOperator.QUANTIZE
    for i, oc in enumerate(model.operatorCodes):
        if max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) == code:
            return i
    oc = s.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), QUANTIZE_VERSION
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _set_q(t, key):
    q = tflite_file.schema().QuantizationParametersT()
    q.scale, q.zeroPoint, q.quantizedDimension = [key[0]], [key[1]], 0
    t.quantization = q


def _new_tensor(model, g, like_index, key, suffix) -> int:
    """A tensor shaped like g.tensors[like_index], int8, quantized with key, with an empty buffer."""
    s = tflite_file.schema()
    like = g.tensors[like_index]
    t = s.TensorT()
    t.shape = list(like.shape)
    t.shapeSignature = None if like.shapeSignature is None else list(like.shapeSignature)
    t.type, t.name = _INT8, (tflite_file.tensor_name(like) + suffix).encode()
    model.buffers.append(s.BufferT())
    t.buffer = len(model.buffers) - 1
    _set_q(t, key)
    g.tensors.append(t)
    return len(g.tensors) - 1


def _requantize(model, src, dst):
    """An int8 -> int8 QUANTIZE op from tensor src to tensor dst (each keeps its parameters)."""
    op = tflite_file.schema().OperatorT()
    op.opcodeIndex = _quantize_opcode(model)
    op.inputs, op.outputs = [src], [dst]
    return op


def _align_lstms(model) -> list[str]:
    """Each int8 LSTM's output and hidden intermediate take its output_state's quantization; the
    old output tensor, which the consumers keep, is requantized from the LSTM's new one."""
    done = []
    for s, k, op, hidden in reversed(list(_int8_lstms(model))):   # inserting shifts later indices
        g = model.subgraphs[s]
        target = _qkey(g.tensors[hidden["output_state"]])
        if {_qkey(g.tensors[i]) for i in hidden.values()} == {target}:
            continue
        if "hidden_intermediate" in hidden:
            _set_q(g.tensors[hidden["hidden_intermediate"]], target)
        old_out = op.outputs[0]
        what = f"{LSTM} op {k} '{tflite_file.tensor_name(g.tensors[old_out])}': state quantization"
        if _qkey(g.tensors[old_out]) != target:
            new_out = _new_tensor(model, g, old_out, target, "/state_quant")
            op.outputs = [new_out] + list(op.outputs[1:])
            g.operators.insert(k + 1, _requantize(model, new_out, old_out))
            what += ", requantized after"
        done.append(what)
    return done[::-1]


def _align_code_movers(model) -> list[str]:
    """Each int8 input of a code-moving op that differs from its output is requantized to the
    output's parameters first (what the op's consumers were calibrated for)."""
    done = []
    for s, k, op, name, differ, out_key in reversed(list(_code_movers(model))):
        g = model.subgraphs[s]
        for j, _ in differ:
            src = op.inputs[j]
            dst = _new_tensor(model, g, src, out_key, f"/requant_for_{name.lower()}")
            op.inputs = [dst if n == j else x for n, x in enumerate(op.inputs)]
            g.operators.insert(k, _requantize(model, src, dst))
        done.append(f"{name} '{tflite_file.tensor_name(g.tensors[op.outputs[0]])}': "
                    f"{len(differ)} input(s) requantized before it")
    return done[::-1]


def align(model) -> list[str]:
    """Rewrite the model in place so that mismatches(model) is empty; one line per change."""
    return _align_lstms(model) + _align_code_movers(model)


def align_bytes(data: bytes, where="<converted model>") -> tuple[bytes, list[str]]:
    """(the model bytes rewritten by align, one line per change); the very same bytes when
    nothing needs changing, so consistent files (every unidirectional one) stay byte-identical."""
    model = tflite_file.read(where, data=data)
    if not mismatches(model):
        return data, []
    changes = align(model)
    left = mismatches(model)
    if left:   # a graph shape the rewrite does not handle: refuse, never ship it as fixed
        raise QuantMismatch(f"{where}: {left[0]}")
    return tflite_file.pack(model), changes


def check_file(path) -> None:
    """The export's guard: QuantMismatch (one line naming the file and the first mismatch) when
    the .tflite file at path has any (mismatches); nothing for a consistent or a float file."""
    try:
        found = mismatches(tflite_file.read(path))
    except (BadInput, IndexError, TypeError, AttributeError):
        return   # not a sound model: the runtimes' verification (groundfloor.verify) says why
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise QuantMismatch(f"{path}: {found[0]}{more}")
