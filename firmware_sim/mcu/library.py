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
from .lower import CopyLayer, FcLayer, LstmLayer, Program, SoftmaxLayer, lower


@dataclass
class Stage:
    """One layer seen one time step at a time: it makes rows of `size` int8 codes."""
    layer: object
    label: str            # e.g. "FULLY_CONNECTED op #2"
    kind: str             # "lstm" | "compute" (FC, softmax) | "alias" (reshape, slice)
    size: int
    seq: bool             # one row per time step; False after the last-step slice
    src: str = ""         # C expression of the input row
    src16: str = "0"      # its int16 copy ("0": none; a dense layer: its x16 scratch)
    dst: str = ""         # C expression of the output row ("y": the caller's buffer)
    dst16: str = "0"      # its int16 copy (an LSTM's h16)


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


def check_int8(graph):
    """Refuse a model whose activations are not int8 (16x8, float), naming the op reading them."""
    for i in graph.inputs:
        t = graph.tensors[i]
        if t.dtype != "INT8":
            op = next((op for op in graph.ops if i in op.inputs), None)
            where = f"{op.kind} op #{op.index}" if op else f"model input '{t.name}'"
            later = (" (16x8 models run on the emulated bench and the host build, not as a "
                     "library yet)") if t.dtype == "INT16" else ""
            raise BadInput(graph.path, f"{where}: {t.dtype.lower()} activations; the firmware "
                           f"library is generated for full-int8 models only{later}")


def load(tflite_path) -> Program:
    """Parse, check (every refusal names the op) and lower the model."""
    graph = tflite_model.load(tflite_path, check_supported=False)
    if any(op.kind not in tflite_model.SUPPORTED_OPS for op in graph.ops):
        tflite_model.check(graph)             # names the unsupported ops
    check_int8(graph)
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


def _assign(stages: list, F: int, layout: Layout) -> int:
    """Give every stage its C row pointers and the arena its buffers; returns the index of the
    last LSTM stage (the end of the core)."""
    last_lstm = max(i for i, s in enumerate(stages) if s.kind == "lstm")
    last_compute = max((i for i, s in enumerate(stages) if s.kind == "compute"), default=-1)
    for s in stages:
        L = s.layer
        if s.kind == "lstm":
            n = L.name.upper()
            s.dst = layout.add(f"{n}_H", "int8_t", L.H, f"{L.name} hidden state h")
            s.dst16 = layout.add(f"{n}_H16", "int16_t", ceil4(L.H), f"{L.name} h as int16, "
                                 "zero-padded (the DSP build's matrix input)")
            layout.add(f"{n}_C", "int16_t", L.H, f"{L.name} cell state c")
    lstms = [s.layer for s in stages if s.kind == "lstm"]
    fcs = [s.layer for s in stages if isinstance(s.layer, FcLayer)]
    if fcs:
        layout.add("SCR_ACC", "int32_t", max(ceil4(L.N) for L in fcs), "scratch: dense accumulators")
    ngates = max(4 * L.H for L in lstms)
    gates = layout.add("SCR_GATES", "int16_t", ngates, "scratch: gates i, f, g, o")
    # a dense layer widens its input into the gates' scratch (dead between layers) when it fits
    wide = [ceil4(L.K) for L in fcs if ceil4(L.K) > ngates]
    layout.add("SCR_X16", "int16_t", max([ceil4(L.I) for L in lstms] + wide),
               "scratch: the widened input")
    for s in stages:
        if isinstance(s.layer, FcLayer):
            s.src16 = "SCR_X16" if ceil4(s.layer.K) in wide else gates
    src, src16 = "x", "0"
    for i, s in enumerate(stages):
        s.src = src
        if not isinstance(s.layer, FcLayer):      # a dense layer's src16 is its x16 scratch
            s.src16 = src16
        if s.kind == "compute":
            s.dst = "y" if i == last_compute and i > last_lstm else layout.add(
                f"ROW_{s.layer.name.upper()}", "int8_t", s.size, f"{s.label} output row")
        elif s.kind == "alias":
            s.dst, s.dst16 = src, src16
        src, src16 = s.dst, s.dst16
    layout.add("LIB_Q_IN", "int8_t", F, "float calls: the quantized sample")
    layout.add("LIB_Y_ROW", "int8_t", stages[-1].size, "float calls: the int8 output row")
    return last_lstm


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


def _functions(stages: list, last_lstm: int) -> str:
    """lib_reset_state(), lib_core_step(x) and lib_head(y)."""
    reset = []
    for s in stages:
        if s.kind == "lstm":
            n = s.layer.name.upper()
            reset += reset_state_code(s.layer, f"{n}_H", f"{n}_H16", f"{n}_C", "    ")
    core = [_stage_code(s) for s in stages[:last_lstm + 1]]
    head = [_stage_code(s) for s in stages[last_lstm + 1:]]
    if stages[-1].dst != "y":      # the output is a row of the arena (an LSTM's h): copy it
        head.append(f"    mcu_copy_s8(y, {stages[-1].dst}, {stages[-1].size});\n")
    return ("/* h = hidden zero point, c = 0 in every LSTM */\n"
            "static void lib_reset_state(void)\n{\n" + "".join(reset) + "}\n\n"
            "/* One time step of the layers up to the last LSTM: x is MODEL_FEATURES codes. */\n"
            "static void lib_core_step(const int8_t *x)\n{\n" + "".join(core) + "}\n\n"
            "/* The layers after the last LSTM, on its current h: y gets MODEL_STEP_OUTPUT_BYTES. */\n"
            "static void lib_head(int8_t *y)\n{\n" + "".join(head) + "}\n\n")


def render_library(tflite_path) -> Library:
    """model.h / model.c of the firmware library (see the module docstring)."""
    prog = load(tflite_path)
    stages, T, F = stages_of(prog)
    layout = Layout()
    last_lstm = _assign(stages, F, layout)
    out = _preamble(prog, SimpleNamespace(arena_bytes=layout.bytes))
    out.insert(1, "/* The firmware library (firmware_sim.mcu.library): see model.h and README.md. */\n")
    out.append("/* The arena: LSTM state (kept between calls), scratch, per-step rows. */\n")
    out.append(layout.macros() + "\n")
    for L in prog.layers:
        if type(L) in CONSTANTS:     # the softmax runs row by row
            CONSTANTS[type(L)](replace(L, rows=1) if isinstance(L, SoftmaxLayer) else L, out)
    out.append("static const mcu_lstm_scratch_t g_scr = { SCR_GATES, SCR_X16 };\n\n")
    out.append(_functions(stages, last_lstm))
    out.append(API_SOURCE)
    tin, tout = prog.tensor(prog.inputs[0]), prog.tensor(prog.outputs[0])
    last = stages[-1]
    info = {"model": Path(prog.graph.path).name, "steps": T, "features": F,
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
    return Library(_header(info), "".join(out), info)


MACROS = (("STEPS", "steps", "T: time steps of one window"),
          ("FEATURES", "features", "F: int8 codes per sample (one time step)"),
          ("INPUT_BYTES", "input_bytes", "one window: T x F codes, step-major"),
          ("OUTPUT_BYTES", "output_bytes", "the whole-window output"),
          ("STEP_OUTPUT_BYTES", "step_output_bytes", "the output of one step"),
          ("SEQUENCE_OUTPUT", "sequence_output", "1: one output row per step (return_sequences)"),
          ("ARENA_BYTES", "arena_bytes", "the static arena (state + scratch)"),
          ("INPUT_SCALE", "input_scale", ""),
          ("INPUT_ZERO_POINT", "input_zero_point", ""),
          ("OUTPUT_SCALE", "output_scale", ""),
          ("OUTPUT_ZERO_POINT", "output_zero_point", ""))


def _defines(info: dict) -> str:
    """model.h's MODEL_* macros (scales as exact double literals)."""
    lines = []
    for name, key, what in MACROS:
        v = info[key]
        text = repr(v) if isinstance(v, float) else str(int(v))
        line = f"#define MODEL_{name} {text}"
        if name == "INPUT_SCALE":
            lines.append("/* real value = scale * (code - zero_point) */")
        lines.append(f"{line:<39} /* {what} */" if what else line)
    return "\n".join(lines)


def _header(info: dict) -> str:
    f = info
    return f"""/* Generated by lstm-edge (`edge firmware`, firmware_sim.mcu.library) from {f['model']}:
 * do not edit. An int8 LSTM as a C99 library: no dynamic allocation, weights const (flash),
 * one static arena of MODEL_ARENA_BYTES. See README.md. */
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {{
#endif

{_defines(f)}
{API_HEADER}"""


API_HEADER = """
#ifndef MODEL_API
#define MODEL_API      /* e.g. a visibility or section attribute for every call below */
#endif

typedef enum {
    MODEL_OK = 0,
    MODEL_ERR_NULL = -1,               /* a pointer argument is NULL */
    MODEL_ERR_LENGTH = -2,             /* n < 1 or n > MODEL_STEPS */
    MODEL_ERR_NOT_INITIALISED = -3,    /* model_init() has not been called */
    MODEL_ERR_VALUE = -4               /* a float input is NaN (nothing was run) */
} model_status_t;

/* Every call checks its arguments in this order (null pointer, length, initialised) and returns
 * without touching the state when one is wrong. Calls are not reentrant: one context at a time
 * (one static arena); x and y must not overlap. */

/* Set up the library and reset the state; call once before anything else. */
MODEL_API model_status_t model_init(void);
/* h = 0 and c = 0 (as a new window): the state before the first sample of a sequence. */
MODEL_API model_status_t model_reset(void);
/* A whole window from the reset state: x[MODEL_INPUT_BYTES] -> y[MODEL_OUTPUT_BYTES]. */
MODEL_API model_status_t model_run(const int8_t *x, int8_t *y);
/* The first n steps of a window from the reset state (a sequence of n samples, 1 <= n <=
 * MODEL_STEPS): x[n * MODEL_FEATURES] -> y[n * MODEL_STEP_OUTPUT_BYTES] with a sequence output,
 * else y[MODEL_STEP_OUTPUT_BYTES]. n = MODEL_STEPS is model_run(). */
MODEL_API model_status_t model_run_steps(const int8_t *x, int32_t n, int8_t *y);
/* Streaming: push one sample x[MODEL_FEATURES], get the output y[MODEL_STEP_OUTPUT_BYTES] of
 * the sequence so far; h and c carry over to the next call (model_run / model_run_steps leave
 * the state after their last step too, model_reset() starts over). */
MODEL_API model_status_t model_step(const int8_t *x, int8_t *y);

/* The same with real values: inputs quantized with MODEL_INPUT_SCALE / ZERO_POINT (rounded half
 * to even, in double, clipped to int8), outputs dequantized with MODEL_OUTPUT_SCALE. */
MODEL_API model_status_t model_run_f(const float *x, float *y);
MODEL_API model_status_t model_run_steps_f(const float *x, int32_t n, float *y);
MODEL_API model_status_t model_step_f(const float *x, float *y);
/* The conversions those calls use, for n >= 1 values (no model_init() needed): real values ->
 * int8 input codes (MODEL_ERR_VALUE on a NaN, q untouched), int8 output codes -> real values. */
MODEL_API model_status_t model_quantize(const float *x, int8_t *q, int32_t n);
MODEL_API model_status_t model_dequantize(const int8_t *q, float *y, int32_t n);

#ifdef __cplusplus
}
#endif
#endif
"""


API_SOURCE = r"""/* ------------------------------------------------------------------ the API (model.h) */
static uint8_t g_ready;        /* model_init() has run */

static model_status_t check_call(const void *x, int32_t n, const void *y)
{
    if (!x || !y) return MODEL_ERR_NULL;
    if (n < 1 || n > MODEL_STEPS) return MODEL_ERR_LENGTH;
    if (!g_ready) return MODEL_ERR_NOT_INITIALISED;
    return MODEL_OK;
}

model_status_t model_init(void)
{
    g_ready = 1;
    lib_reset_state();
    return MODEL_OK;
}

model_status_t model_reset(void)
{
    if (!g_ready) return MODEL_ERR_NOT_INITIALISED;
    lib_reset_state();
    return MODEL_OK;
}

/* 1 when none of the n floats is a NaN (tested on the bits: safe under -ffast-math too) */
static int all_numbers(const float *x, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        union { float f; uint32_t u; } b;
        b.f = x[i];
        if ((b.u & 0x7FFFFFFFu) > 0x7F800000u) return 0;
    }
    return 1;
}

/* round(x / scale) + zero_point, half to even, clipped to int8 (numpy's rounding, in double) */
static void quantize_values(const float *x, int8_t *q, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        double v = (double)x[i] / MODEL_INPUT_SCALE;
        v = v > 512.0 ? 512.0 : (v < -512.0 ? -512.0 : v);    /* also +-inf; no overflow below */
        int32_t r = (int32_t)v;                                /* toward zero */
        double frac = v - (double)r;                           /* exact */
        if (frac > 0.5 || (frac == 0.5 && (r & 1))) r++;
        else if (frac < -0.5 || (frac == -0.5 && (r & 1))) r--;
        r += MODEL_INPUT_ZERO_POINT;
        q[i] = (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
    }
}

static void dequantize_values(const int8_t *q, float *y, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        y[i] = (float)(q[i] - MODEL_OUTPUT_ZERO_POINT) * (float)MODEL_OUTPUT_SCALE;
}

model_status_t model_quantize(const float *x, int8_t *q, int32_t n)
{
    if (!x || !q) return MODEL_ERR_NULL;
    if (n < 1) return MODEL_ERR_LENGTH;
    if (!all_numbers(x, n)) return MODEL_ERR_VALUE;
    quantize_values(x, q, n);
    return MODEL_OK;
}

model_status_t model_dequantize(const int8_t *q, float *y, int32_t n)
{
    if (!q || !y) return MODEL_ERR_NULL;
    if (n < 1) return MODEL_ERR_LENGTH;
    dequantize_values(q, y, n);
    return MODEL_OK;
}

/* Input row t of x: int8 codes, or (f) floats quantized into LIB_Q_IN. */
static const int8_t *input_row(const void *x, int32_t t, int f)
{
    if (!f) return (const int8_t *)x + t * MODEL_FEATURES;
    quantize_values((const float *)x + t * MODEL_FEATURES, LIB_Q_IN, MODEL_FEATURES);
    return LIB_Q_IN;
}

/* The head's output row into row t of y: int8 codes, or (f) dequantized floats. */
static void output_row(void *y, int32_t t, int f)
{
    if (!f) {
        lib_head((int8_t *)y + t * MODEL_STEP_OUTPUT_BYTES);
        return;
    }
    lib_head(LIB_Y_ROW);
    dequantize_values(LIB_Y_ROW, (float *)y + t * MODEL_STEP_OUTPUT_BYTES, MODEL_STEP_OUTPUT_BYTES);
}

/* n steps from the reset state: every output row (a sequence) or the last one */
static void run_rows(const void *x, int32_t n, void *y, int f)
{
    lib_reset_state();
    for (int32_t t = 0; t < n; t++) {
        lib_core_step(input_row(x, t, f));
#if MODEL_SEQUENCE_OUTPUT
        output_row(y, t, f);
#endif
    }
#if !MODEL_SEQUENCE_OUTPUT
    output_row(y, 0, f);
#endif
}

model_status_t model_run_steps(const int8_t *x, int32_t n, int8_t *y)
{
    model_status_t rc = check_call(x, n, y);
    if (rc != MODEL_OK) return rc;
    run_rows(x, n, y, 0);
    return MODEL_OK;
}

model_status_t model_run(const int8_t *x, int8_t *y)
{
    return model_run_steps(x, MODEL_STEPS, y);
}

model_status_t model_step(const int8_t *x, int8_t *y)
{
    model_status_t rc = check_call(x, 1, y);
    if (rc != MODEL_OK) return rc;
    lib_core_step(x);
    lib_head(y);
    return MODEL_OK;
}

model_status_t model_run_steps_f(const float *x, int32_t n, float *y)
{
    model_status_t rc = check_call(x, n, y);
    if (rc != MODEL_OK) return rc;
    if (!all_numbers(x, n * MODEL_FEATURES)) return MODEL_ERR_VALUE;
    run_rows(x, n, y, 1);
    return MODEL_OK;
}

model_status_t model_run_f(const float *x, float *y)
{
    return model_run_steps_f(x, MODEL_STEPS, y);
}

model_status_t model_step_f(const float *x, float *y)
{
    model_status_t rc = check_call(x, 1, y);
    if (rc != MODEL_OK) return rc;
    if (!all_numbers(x, MODEL_FEATURES)) return MODEL_ERR_VALUE;
    lib_core_step(input_row(x, 0, 1));
    output_row(y, 0, 1);
    return MODEL_OK;
}
"""
