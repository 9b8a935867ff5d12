"""The firmware library's C (`edge firmware`): model.h / model.c with init, reset, whole-window,
first-n-steps, step and float calls, the LSTM state kept between calls in one static arena.

    lib = render_library("model_int8.tflite")     # Library(header, source, info); BadInput
                                                   # naming the op it cannot run step by step
The layer constants are codegen's (both weight layouts, #if MCU_SIMD) and the kernels are
mcu_kernels.c's, so one step is exactly one step of the emulated firmware.

The model is run one time step at a time: every layer maps one row per step to one row per step
(an LSTM carries h and c across steps; a Dense or softmax on a sequence runs row by row; a
reshape that keeps the rows is free), except one optional last-step slice after the last LSTM,
after which the layers run on the last row only. Hence
    core(x_t)        the layers up to the last LSTM, one step, the state carried on
    head(y)          the layers after it, on the last LSTM's current hidden state
    step(x_t)        = core(x_t); head(y)
    run_steps(x, n)  = reset; core(x_0) .. core(x_n-1), with head after every step (a sequence
                       output: n rows) or once at the end (one row)
which is TFLite Micro's whole window for n = T, and its streaming (T = 1) twin step by step.

A 16x8 model (int16 activations, int8 weights, int64 biases) gets the same API with int16_t
codes (libapi.py): its rows, h (zero-padded to 4, the DSP step's matrix input) and c are int16,
and the 16x8 kernels (mcu_lstm16_step / mcu_fc16 / mcu_softmax16) run them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

from groundfloor.errors import BadInput

from . import tflite_model
from .arena import ceil4
from .codegen import CONSTANTS, _preamble, reset_state_code, step_fn
from .libapi import api_source, header
from .lower import CopyLayer, FcLayer, LstmLayer, Program, SoftmaxLayer, lower

CODE_TYPES = {"INT8": 8, "INT16": 16}     # activation dtype -> bits of the library's codes


@dataclass
class Stage:
    """One layer seen one time step at a time: it makes rows of `size` codes (int8 or int16)."""
    layer: object
    label: str            # e.g. "FULLY_CONNECTED op #2"
    kind: str             # "lstm" | "compute" (FC, softmax) | "alias" (reshape, slice)
    size: int
    seq: bool             # one row per time step; False after the last-step slice
    src: str = ""         # C expression of the input row
    src16: str = "0"      # int8: its int16 copy ("0": none; a dense layer: its x16 scratch);
                          # 16x8: the row zero-padded to 4 (an LSTM's h) or "0"
    dst: str = ""         # C expression of the output row ("y": the caller's buffer)
    dst16: str = "0"      # int8: its int16 copy (an LSTM's h16); 16x8: the padded row


@dataclass
class Layout:
    """The arena: named buffers at 4-byte aligned offsets, each a C macro of a typed pointer."""
    buffers: list = field(default_factory=list)     # [name, ctype, count, offset, comment]
    end: int = 0

    def add(self, name, ctype, count, comment) -> str:
        width = {"int8_t": 1, "int16_t": 2, "int32_t": 4}[ctype]
        self.buffers.append([name, ctype, int(count), self.end, comment])
        self.end = ceil4(self.end + max(int(count), 1) * width)
        return name

    @property
    def bytes(self) -> int:
        return max(self.end, 4)

    def macros(self) -> str:
        return "".join(f"#define {n:<12} (({t} *)(g_arena + {o}))   /* {c}: {t} [{k}] */\n"
                       for n, t, k, o, c in self.buffers)


@dataclass
class Library:
    header: str
    source: str
    info: dict


def _label(prog: Program, L) -> str:
    op = next(op for op in prog.graph.ops if L.out in op.outputs)
    return f"{op.kind} op #{op.index}"


def check_codes(graph):
    """Refuse a model whose activations are neither int8 nor int16 (a float or hybrid model),
    naming the op reading them (tflite_model.check keeps int8 and 16x8 models consistent)."""
    for i in graph.inputs:
        t = graph.tensors[i]
        if t.dtype not in CODE_TYPES:
            op = next((op for op in graph.ops if i in op.inputs), None)
            where = f"{op.kind} op #{op.index}" if op else f"model input '{t.name}'"
            raise BadInput(graph.path, f"{where}: {t.dtype.lower()} activations; the firmware "
                           "library is generated for full-int8 and 16x8 (int16 activations) "
                           "models only")


def load(tflite_path) -> Program:
    """Parse, check (every refusal names the op) and lower the model."""
    graph = tflite_model.load(tflite_path, check_supported=False)
    if any(op.kind not in tflite_model.SUPPORTED_OPS for op in graph.ops):
        tflite_model.check(graph)             # names the unsupported ops
    check_codes(graph)
    tflite_model.check(graph)
    return lower(graph)


# ------------------------------------------------------------------ the per-step view

def _lstm_row(prog, L: LstmLayer, size, seq, T, label):
    if not seq:
        raise BadInput(prog.graph.path, f"{label}: an LSTM after the last-step slice")
    if size != L.I or L.T != T:
        raise BadInput(prog.graph.path, f"{label}: reads rows of {size} codes over {T} steps, "
                       f"expected {L.I} over {L.T}")
    return L.H, True, "lstm"


def _rows_of(prog, L, size, seq, T, label, width, rows):
    if size != width or rows != (T if seq else 1):
        raise BadInput(prog.graph.path, f"{label}: mixes time steps ({rows} rows of {width} on "
                       f"{'a sequence' if seq else 'one row'} of {size}-code rows); the library "
                       "runs layers one time step at a time")


def _fc_row(prog, L: FcLayer, size, seq, T, label):
    _rows_of(prog, L, size, seq, T, label, L.K, L.rows)
    return L.N, seq, "compute"


def _softmax_row(prog, L: SoftmaxLayer, size, seq, T, label):
    _rows_of(prog, L, size, seq, T, label, L.depth, L.rows)
    return L.depth, seq, "compute"


def _copy_row(prog, L: CopyLayer, size, seq, T, label):
    out = prog.tensor(L.out)
    if L.alias:        # a reshape: fine when it keeps the rows (or the one row)
        if not seq or (out.shape and out.shape[-1] == size and math.prod(out.shape[:-1]) == T):
            return size, seq, "alias"
        raise BadInput(prog.graph.path, f"{label}: reshapes the sequence to {list(out.shape)} "
                       "(e.g. Flatten); the library runs layers one time step at a time")
    if seq and list(L.runs) == [((T - 1) * size, 0, size)] and out.size == size:
        return size, False, "alias"                      # the last time step
    if not seq and list(L.runs) == [(0, 0, size)] and out.size == size:
        return size, False, "alias"                      # the whole row
    raise BadInput(prog.graph.path, f"{label}: a slice other than the last time step; the "
                   "library runs layers one time step at a time")


ROW_RULES = {LstmLayer: _lstm_row, FcLayer: _fc_row, SoftmaxLayer: _softmax_row,
             CopyLayer: _copy_row}


def stages_of(prog: Program) -> tuple[list, int, int]:
    """(stages, T, F): the model as a chain of per-step layers; BadInput naming the op that
    does not fit that view."""
    path = prog.graph.path
    if len(prog.inputs) != 1 or len(prog.outputs) != 1:
        raise BadInput(path, "the firmware library supports one model input and one model output")
    tin = prog.tensor(prog.inputs[0])
    if len(tin.shape) != 3 or tin.shape[0] != 1:
        raise BadInput(path, f"model input of shape {list(tin.shape)}; the library needs [1, T, F]")
    T, F = int(tin.shape[1]), int(tin.shape[2])
    size, seq, prev, stages = F, True, prog.inputs[0], []
    for L in prog.layers:
        label = _label(prog, L)
        if L.x != prev:
            raise BadInput(path, f"{label}: reads a tensor other than the previous layer's "
                           "output; the library runs a chain of layers")
        size, seq, kind = ROW_RULES[type(L)](prog, L, size, seq, T, label)
        stages.append(Stage(L, label, kind, int(size), seq))
        prev = L.out
    if prev != prog.outputs[0]:
        raise BadInput(path, "the model output is not the last layer's output")
    if not any(s.kind == "lstm" for s in stages):
        raise BadInput(path, "no UNIDIRECTIONAL_SEQUENCE_LSTM op: nothing to run step by step")
    return stages, T, F


def _assign(stages: list, F: int, layout: Layout, bits: int) -> int:
    """Give every stage its C row pointers and the arena its buffers (in this order: each
    LSTM's state, the scratch, the rows, the float calls' rows); returns the index of the last
    LSTM stage (the end of the core)."""
    state, scratch, ctype = _BUFFERS[bits]
    last_lstm = max(i for i, s in enumerate(stages) if s.kind == "lstm")
    last_compute = max((i for i, s in enumerate(stages) if s.kind == "compute"), default=-1)
    for s in stages:
        if s.kind == "lstm":
            state(s, layout)
    fixed16 = scratch(stages, layout)
    src, src16 = "x", "0"
    for i, s in enumerate(stages):
        s.src, s.src16 = src, fixed16.get(i, src16)
        if s.kind == "compute":
            s.dst = "y" if i == last_compute and i > last_lstm else layout.add(
                f"ROW_{s.layer.name.upper()}", ctype, s.size, f"{s.label} output row")
        elif s.kind == "alias":
            s.dst, s.dst16 = src, src16
        src, src16 = s.dst, s.dst16
    layout.add("LIB_Q_IN", ctype, F, "float calls: the quantized sample")
    layout.add("LIB_Y_ROW", ctype, stages[-1].size, f"float calls: the {ctype[:-2]} output row")
    return last_lstm


def _state8(s: Stage, layout: Layout):
    """An int8 LSTM's h, its int16 copy (zero-padded: the DSP build's matrix input) and c."""
    L, n = s.layer, s.layer.name.upper()
    s.dst = layout.add(f"{n}_H", "int8_t", L.H, f"{L.name} hidden state h")
    s.dst16 = layout.add(f"{n}_H16", "int16_t", ceil4(L.H), f"{L.name} h as int16, "
                         "zero-padded (the DSP build's matrix input)")
    layout.add(f"{n}_C", "int16_t", 2 * L.H, f"{L.name} cell state c, then the DSP step's "
               "new h16 until every unit has read the old one")


def _scratch8(stages: list, layout: Layout) -> dict:
    """The dense accumulators, the gates and the widened input; returns {stage index: its
    src16} for the dense layers (each widens its input into the gates' scratch, dead between
    layers, when it fits, else into the widened-input scratch)."""
    lstms = [s.layer for s in stages if s.kind == "lstm"]
    fcs = [s.layer for s in stages if isinstance(s.layer, FcLayer)]
    if fcs:
        layout.add("SCR_ACC", "int32_t", max(ceil4(L.N) for L in fcs), "scratch: dense accumulators")
    ngates = max(4 * L.H for L in lstms)
    gates = layout.add("SCR_GATES", "int16_t", ngates, "scratch: gates i, f, g, o")
    wide = [ceil4(L.K) for L in fcs if ceil4(L.K) > ngates]
    layout.add("SCR_X16", "int16_t", max([ceil4(L.I) for L in lstms] + wide),
               "scratch: the widened input")
    return {i: "SCR_X16" if ceil4(s.layer.K) in wide else gates
            for i, s in enumerate(stages) if isinstance(s.layer, FcLayer)}


def _state16(s: Stage, layout: Layout):
    """A 16x8 LSTM's h (zero-padded to 4: the DSP step reads it as its matrix input, a stacked
    LSTM as its padded input) and c."""
    L, n = s.layer, s.layer.name.upper()
    s.dst = s.dst16 = layout.add(f"{n}_H", "int16_t", ceil4(L.H), f"{L.name} hidden "
                                 "state h, zero-padded (the DSP build's matrix input)")
    layout.add(f"{n}_C", "int16_t", L.H, f"{L.name} cell state c")


def _scratch16(stages: list, layout: Layout) -> dict:
    """The gates and the padded input; dense and softmax layers need none."""
    lstms = [s.layer for s in stages if s.kind == "lstm"]
    layout.add("SCR_GATES", "int16_t", max(4 * L.H for L in lstms), "scratch: gates i, f, g, o")
    layout.add("SCR_X16", "int16_t", max(ceil4(L.I) for L in lstms), "scratch: the padded input")
    return {}


# per activation width: (one LSTM's state buffers, the scratch, the row code type)
_BUFFERS = {8: (_state8, _scratch8, "int8_t"), 16: (_state16, _scratch16, "int16_t")}


def _stage_code(s: Stage) -> str:
    L = s.layer
    if s.kind == "lstm":
        n = L.name.upper()
        return (f"    {step_fn(L)}({s.src}, {s.src16}, {n}_H, {n}_H16, {n}_C, "
                "&g_scr);\n")
    if isinstance(L, FcLayer):
        return f"    mcu_fc(&{L.name}, {s.src}, {s.dst}, SCR_ACC, {s.src16});\n"
    if isinstance(L, SoftmaxLayer):
        return f"    mcu_softmax(&{L.name}, {s.src}, {s.dst});\n"
    what = "the last time step is the current row" if not s.seq and L.runs[0][0] else "no copy"
    return f"    /* {L.name} ({s.label}): {what} */\n"


def _stage_code16(s: Stage) -> str:
    L = s.layer
    if s.kind == "lstm":
        n = L.name.upper()
        return f"    {step_fn(L)}({s.src}, {s.src16}, {n}_H, {n}_C, SCR_GATES, SCR_X16);\n"
    if isinstance(L, FcLayer):
        return f"    mcu_fc16(&{L.name}, {s.src}, {s.dst});\n"
    if isinstance(L, SoftmaxLayer):
        return f"    mcu_softmax16(&{L.name}, {s.src}, {s.dst});\n"
    return _stage_code(s)


def _reset16(L: LstmLayer, n: str) -> list:
    return [f"    mcu_fill_s16({n}_H, 0, {ceil4(L.H)});\n", f"    mcu_fill_s16({n}_C, 0, {L.H});\n"]


# per activation width: (one stage's C, one LSTM's state reset, the code type)
DIALECTS = {
    8: (_stage_code,
        lambda L, n: reset_state_code(L, f"{n}_H", f"{n}_H16", f"{n}_C", "    "), "int8_t"),
    16: (_stage_code16, _reset16, "int16_t"),
}


def _functions(stages: list, last_lstm: int, bits: int) -> str:
    """lib_reset_state(), lib_core_step(x) and lib_head(y)."""
    stage_code, reset_code, ctype = DIALECTS[bits]
    reset = []
    for s in stages:
        if s.kind == "lstm":
            reset += reset_code(s.layer, s.layer.name.upper())
    core = [stage_code(s) for s in stages[:last_lstm + 1]]
    head = [stage_code(s) for s in stages[last_lstm + 1:]]
    last = stages[-1]
    if last.dst != "y":      # the output is a row of the arena (an LSTM's h): copy it
        head.append(f"    mcu_copy_s8(y, {last.dst}, {last.size});\n" if bits == 8 else
                    f"    mcu_copy_s8((int8_t *)y, (const int8_t *){last.dst}, {2 * last.size});\n")
    rows = "MODEL_STEP_OUTPUT_BYTES" if bits == 8 else "MODEL_STEP_OUTPUT_CODES"
    return ("/* h = hidden zero point, c = 0 in every LSTM */\n"
            "static void lib_reset_state(void)\n{\n" + "".join(reset) + "}\n\n"
            "/* One time step of the layers up to the last LSTM: x is MODEL_FEATURES codes. */\n"
            f"static void lib_core_step(const {ctype} *x)\n{{\n" + "".join(core) + "}\n\n"
            f"/* The layers after the last LSTM, on its current h: y gets {rows}. */\n"
            f"static void lib_head({ctype} *y)\n{{\n" + "".join(head) + "}\n\n")


def render_library(tflite_path) -> Library:
    """model.h / model.c of the firmware library (see the module docstring)."""
    prog = load(tflite_path)
    stages, T, F = stages_of(prog)
    layout, bits = Layout(), prog.bits
    last_lstm = _assign(stages, F, layout, bits)
    out = _preamble(prog, SimpleNamespace(arena_bytes=layout.bytes))
    out.insert(1, "/* The firmware library (firmware_sim.mcu.library): see model.h and README.md. */\n")
    out.append("/* The arena: LSTM state (kept between calls), scratch, per-step rows. */\n")
    out.append(layout.macros() + "\n")
    for L in prog.layers:
        if type(L) in CONSTANTS:     # the softmax runs row by row
            CONSTANTS[type(L)](replace(L, rows=1) if isinstance(L, SoftmaxLayer) else L, out)
    if bits == 8:
        out.append("static const mcu_lstm_scratch_t g_scr = { SCR_GATES, SCR_X16 };\n\n")
    out.append(_functions(stages, last_lstm, bits))
    out.append(api_source(bits))
    tin, tout = prog.tensor(prog.inputs[0]), prog.tensor(prog.outputs[0])
    last = stages[-1]
    info = {"model": Path(prog.graph.path).name, "bits": bits, "code_type": f"int{bits}",
            "steps": T, "features": F,
            "input_bytes": int(tin.size), "output_bytes": int(tout.size),
            "step_output_bytes": last.size, "sequence_output": last.seq,
            "output_shape": [int(d) for d in tout.shape], "arena_bytes": layout.bytes,
            "input_scale": float(tin.sc), "input_zero_point": int(tin.zp),
            "output_scale": float(tout.sc), "output_zero_point": int(tout.zp),
            "layers": [s.label for s in stages],
            "lstm": [{"name": s.layer.name, "units": s.layer.H, "inputs": s.layer.I}
                     for s in stages if s.kind == "lstm"],
            "buffers": [{"name": n, "type": t, "count": k, "offset": o, "what": c}
                        for n, t, k, o, c in layout.buffers],
            "gate_macs_per_step": int(sum(s.layer.macs_per_step for s in stages
                                          if s.kind == "lstm")),
            "table_source": prog.table_source}
    if tout.size != (T * last.size if last.seq else last.size):
        raise BadInput(prog.graph.path, f"model output of {tout.size} codes does not match "
                       f"{'T rows' if last.seq else 'one row'} of {last.size}")
    return Library(header(info), "".join(out), info)


