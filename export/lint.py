"""`edge lint`: a pre-flight check of a Keras model's layers against what the TFLite
converter and the fused LSTM kernel actually do, before any conversion is attempted.

    from export.lint import lint_model, lint_file
    report = lint_model(model)          # a tf-keras (Keras 2) or Keras 3 model
    report = lint_file("model.keras")   # .keras, .h5 or a SavedModel directory
    print(report.format_table())
    report.ok, report.refused, report.needs_unroll, report.overrides, report.to_json()

One row per layer, with a verdict:
  fused    -> tf-keras LSTM that becomes the fused UNIDIRECTIONAL_SEQUENCE_LSTM op
              (int8 works; TFLite Micro arena ~4 KB)
  unrolled -> converts correctly only when rebuilt with unroll=True (no fused op: a
              500-1000 op graph and a 137-245 KB TFLite Micro arena)
  native   -> ordinary ops (Dense, Conv1D, Dropout, ...)
  refused  -> no route converts to a correct model
Verdicts describe the tf-keras rebuild (batch 1) that `edge export` converts: a Keras 3
model is never converted as such (every Keras 3 RNN is a WHILE loop whose int8
calibration segfaults, FIELD_NOTES).

`report.overrides` maps layer names to the config changes the rebuild should make
(unroll=True/False, stateful=False, recurrent_dropout=0.0); `needs_unroll` lists the layers
to rebuild with unroll=True.

The verdicts come from MEASURED below (export/lint_probe.py; re-run it with
`python -m export.lint_probe` when tensorflow / tf-keras / tf2onnx versions move).
None of the Keras RNN settings probed is refused: every one has a correct route (fused,
or unrolled). Refused are layers whose ops have no TFLite builtin (traced custom layers,
custom RNN cells, classes that cannot be imported, ConvLSTM).
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Callable

from groundfloor.errors import BadInput

# ------------------------------------------------------------------------------------------
# Measured facts, 2026-11-25 (python -m export.lint_probe): tensorflow-cpu 2.21.0,
# tf-keras 2.21.0, tf2onnx 1.17.0 (opset 17), onnxruntime 1.31.1, ai-edge-litert 2.3.0,
# tflite-micro 0.dev20261023182759. tf-keras models, batch 1, input [1, 16, 3],
# LSTM/GRU/SimpleRNN(8) -> Dense(1), random weights. Each conversion ran in a child process,
# then ran in LiteRT / onnxruntime and was compared with Keras on an input whose last 5 steps
# are zeros. int8 = full int8 (representative dataset, TFLITE_BUILTINS_INT8, int8 in/out).
# "fused" = UNIDIRECTIONAL_SEQUENCE_LSTM; "WHILE" = loop subgraph; "flat" = unrolled
# straight-line graph; ops = operator count over all subgraphs; d = max |TFLite - Keras|.
#
# case               float32         int8 (full)        unroll=True float / int8     tf2onnx
# LSTM               fused 3 ops     fused, d 9e-4      flat 221 / 225 ops, ok       LSTM
# stacked (2x LSTM)  fused x2        fused x2           flat 441 / 445 ops, ok       LSTM x2
# Bidirectional      fused x2+REV    fused (d 0.078 *)  flat 440 / 444 ops, ok       one bidi LSTM
# go_backwards       fused+REVERSE   fused              flat 221, ok                 LSTM
# GRU                WHILE           SIGSEGV            flat 234 / 234 ops, ok       GRU
# SimpleRNN          WHILE           SIGSEGV            flat 65 / 65 ops, ok         Loop
# RNN(LSTMCell)      WHILE           SIGSEGV            flat 221 / 225 ops, ok       LSTM
# Masking + LSTM     WHILE (mask ok) SIGSEGV            flat 258 / 264 ops, mask ok  Loop
#                    (unrolled int8 uses REDUCE_ANY: TFLite Micro "Didn't find op for
#                    builtin opcode 'REDUCE_ANY'", fails to allocate; LiteRT runs it)
# return_state=True  WHILE           SIGSEGV            flat 221 / 221 ops, ok       LSTM (Y_h, Y_c)
# stateful=True      WHILE +VAR ops  SIGSEGV            flat 238 / 242 ops           LSTM
#                    (state in VAR_HANDLE/ASSIGN_VARIABLE, but the initial state is the
#                    Keras variables' value at conversion time: d 1.8e-4 after one call)
# activation=relu    WHILE           SIGSEGV            flat 220 / 220 ops, ok       LSTM
# hard_sigmoid       WHILE           SIGSEGV            flat 362 / 362 ops, ok       LSTM
# use_bias=False     WHILE           SIGSEGV            flat 206 / 206 ops, ok       LSTM
# recurrent_dropout  WHILE           SIGSEGV            flat 327 / 327 ops, ok       Loop
# dropout=0.2        fused           fused              flat 221, ok                 LSTM
# time_major=True    fused           fused              flat 220, ok                 LSTM
# custom Layer, builtin ops (x*sigmoid(x))  fused + MUL/LOGISTIC, int8 ok            LSTM
# custom Layer, tf.math.igamma   float and int8: "error: 'tf.Igamma' op is neither a custom
#                    op nor a flex op"; tf2onnx: onnxruntime INVALID_GRAPH (Igamma)
# Conv1D -> LSTM     fused (CONV_2D)  fused             -                            LSTM
# Reshape/Dense/LSTM(seq)/Dropout/Flatten/Dense   fused, int8 fused                  LSTM
# Follow-ups measured the same day (same versions):
# - stateful=True rebuilt with stateful=False (same weights): fused; two invoke() calls without
#   reset_all_variables() equal Keras stateful call 1 and call 2 exactly (float; int8 d 0.004).
# - Bidirectional int8 (*): over 50 inputs RMSE 0.041 vs 0.014 for one LSTM (output std
#   0.13-0.16, random weights): converts, but drifts about 3x more.
# - No probe case was silently wrong: the masked WHILE / unrolled graphs honour the mask
#   (d 3e-8 vs Keras, 0.055 vs the same model without the mask).
MEASURED_ON = {"date": "2026-11-25", "tensorflow": "2.21.0", "tf_keras": "2.21.0",
               "tf2onnx": "1.17.0", "onnxruntime": "1.31.1", "ai_edge_litert": "2.3.0",
               "tflite_micro": "0.dev20261023182759"}
MEASURED: dict[str, dict[str, str]] = {
    # case: float32 / int8 / unroll_float / unroll_int8 / onnx, as the probe summarised them
    "lstm": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 221 ops",
             "unroll_int8": "flat 225 ops", "onnx": "LSTM"},
    "stacked": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 441 ops",
                "unroll_int8": "flat 445 ops", "onnx": "LSTM"},
    "bidirectional": {"float32": "fused", "int8": "fused (drift 3x LSTM)",
                      "unroll_float32": "flat 440 ops", "unroll_int8": "flat 444 ops", "onnx": "LSTM"},
    "go_backwards": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 221 ops",
                     "unroll_int8": "flat 221 ops", "onnx": "LSTM"},
    "gru": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 234 ops",
            "unroll_int8": "flat 234 ops", "onnx": "GRU"},
    "simple_rnn": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 65 ops",
                   "unroll_int8": "flat 65 ops", "onnx": "Loop"},
    "rnn_lstmcell": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 221 ops",
                     "unroll_int8": "flat 225 ops", "onnx": "LSTM"},
    "masking": {"float32": "WHILE (mask honoured)", "int8": "SIGSEGV",
                "unroll_float32": "flat 258 ops (mask honoured)",
                "unroll_int8": "flat 264 ops (mask honoured; REDUCE_ANY not in TFLite Micro)",
                "onnx": "Loop"},
    "return_state": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 221 ops",
                     "unroll_int8": "flat 221 ops", "onnx": "LSTM"},
    "stateful": {"float32": "WHILE + VAR_HANDLE (initial state baked at conversion)",
                 "int8": "SIGSEGV", "unroll_float32": "flat 238 ops", "unroll_int8": "flat 242 ops",
                 "onnx": "LSTM", "rebuilt_stateless": "fused, state carried across invoke()"},
    "relu": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 220 ops",
             "unroll_int8": "flat 220 ops", "onnx": "LSTM"},
    "hard_sigmoid": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 362 ops",
                     "unroll_int8": "flat 362 ops", "onnx": "LSTM"},
    "no_bias": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 206 ops",
                "unroll_int8": "flat 206 ops", "onnx": "LSTM"},
    "recurrent_dropout": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 327 ops",
                          "unroll_int8": "flat 327 ops", "onnx": "Loop"},
    "dropout": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 221 ops",
                "unroll_int8": "flat 225 ops", "onnx": "LSTM"},
    "time_major": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 220 ops",
                   "unroll_int8": "flat 220 ops", "onnx": "LSTM"},
    "custom_swish": {"float32": "fused", "int8": "fused", "onnx": "LSTM"},
    "custom_igamma": {"float32": "error: 'tf.Igamma' op is neither a custom op nor a flex op",
                      "int8": "same error", "onnx": "onnxruntime INVALID_GRAPH"},
    "conv1d": {"float32": "fused", "int8": "fused", "onnx": "LSTM"},
    "around": {"float32": "fused", "int8": "fused", "onnx": "LSTM"},
}

# ------------------------------------------------------------------------------------------
FUSED, UNROLLED, NATIVE, REFUSED = "fused", "unrolled", "native", "refused"
_RANK = {NATIVE: 0, FUSED: 1, UNROLLED: 2, REFUSED: 3}

UNROLL_COST = ("Needs unroll=True: ~14 ops per step per layer (221 vs 3 fused at T=16; "
               "500-1000 ops at T=32-48), TFLite Micro arena 137-245 KB instead of ~4 KB")
RETURN_STATE_WHY = ("return_state=True: WHILE loop (int8 SIGSEGV), the fused op cannot "
                    "output h/c")
MASK_TFLM = "the mask needs REDUCE_ANY, which TFLite Micro lacks (LiteRT only)"


@dataclass
class Finding:
    verdict: str
    reason: str
    overrides: dict = field(default_factory=dict)   # config changes for the tf-keras rebuild


@dataclass
class LayerInfo:
    name: str
    cls: str
    config: dict
    masked: bool = False          # an upstream Masking / Embedding(mask_zero) mask reaches it
    layer: object = None          # the live layer (None when linting a bare config)
    framework: str = "tf_keras"   # tf_keras | keras3 | config


@dataclass
class LintRow:
    layer: str
    cls: str
    verdict: str
    reason: str

    def as_dict(self):
        return {"layer": self.layer, "class": self.cls, "verdict": self.verdict,
                "reason": self.reason}


@dataclass
class LintReport:
    rows: list[LintRow]
    framework: str = "tf_keras"
    notes: list[str] = field(default_factory=list)     # model-level remarks
    overrides: dict[str, dict] = field(default_factory=dict)  # layer -> config changes

    @property
    def refused(self) -> list[LintRow]:
        return [r for r in self.rows if r.verdict == REFUSED]

    @property
    def needs_unroll(self) -> list[str]:
        return [r.layer for r in self.rows if r.verdict == UNROLLED]

    @property
    def ok(self) -> bool:
        return not self.refused

    def verdict_of(self, layer_name: str) -> str:
        for r in self.rows:
            if r.layer == layer_name:
                return r.verdict
        raise KeyError(layer_name)

    def to_json(self) -> list[dict]:
        return [r.as_dict() for r in self.rows]

    def format_table(self, width: int = 100) -> str:
        heads = ("layer", "class", "verdict", "reason")
        w0 = max([len(heads[0])] + [len(r.layer) for r in self.rows])
        w1 = max([len(heads[1])] + [len(r.cls) for r in self.rows])
        w2 = max(len(v) for v in _RANK)
        w3 = max(20, width - w0 - w1 - w2 - 6)
        lines = [f"{heads[0]:<{w0}}  {heads[1]:<{w1}}  {heads[2]:<{w2}}  {heads[3]}",
                 f"{'-' * w0}  {'-' * w1}  {'-' * w2}  {'-' * w3}"]
        for r in self.rows:
            chunks = _wrap(r.reason, w3)
            lines.append(f"{r.layer:<{w0}}  {r.cls:<{w1}}  {r.verdict:<{w2}}  {chunks[0]}")
            pad = " " * (w0 + w1 + w2 + 6)
            lines.extend(pad + c for c in chunks[1:])
        n = {v: sum(r.verdict == v for r in self.rows) for v in _RANK}
        lines.append("")
        lines.append(("OK" if self.ok else "REFUSED") + ": " +
                     ", ".join(f"{n[v]} {v}" for v in (FUSED, UNROLLED, NATIVE, REFUSED)))
        if self.needs_unroll:
            lines.append("rebuild with unroll=True: " + ", ".join(self.needs_unroll))
        lines.extend("note: " + s for s in self.notes)
        return "\n".join(lines)


def _wrap(text, width):
    words, out, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            out.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return out + [cur] if cur or not out else out


# ------------------------------------------------------------------------------------------
# Helpers on configs (tf-keras and Keras 3 spell them alike for the keys used here)
def _act(value) -> str:
    """Activation name from a config value: 'tanh', {'class_name': 'tanh'}, a function."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("name") or value.get("class_name")
    if callable(value):
        value = getattr(value, "__name__", str(value))
    return str(value or "linear").lower()


def _sub(cfg_entry) -> tuple[str, dict]:
    """(class name, config) of a nested layer/cell entry in a config."""
    if isinstance(cfg_entry, dict):
        return cfg_entry.get("class_name", "?"), cfg_entry.get("config", {}) or {}
    return type(cfg_entry).__name__, getattr(cfg_entry, "get_config", dict)()


# ------------------------------------------------------------------------------------------
# Rules. Each takes a LayerInfo and returns a Finding.
def _rnn_route(info: LayerInfo, kind: str) -> tuple[list[str], dict]:
    """Settings of any Keras RNN that change its route; (why-not-fused, overrides)."""
    cfg, why, ov = info.config, [], {}
    if info.masked:
        why.append("masked input (Masking/Embedding mask_zero): no fused route, WHILE loop "
                   "(int8 SIGSEGV); unrolled, SELECT_V2 applies the mask correctly, but "
                   + MASK_TFLM)
    if cfg.get("stateful"):
        ov["stateful"] = False      # dropped again by the unrolled routes (see _STATEFUL_UNROLLED)
    return why, ov


_STATEFUL_UNROLLED = ("stateful: the unrolled graph keeps the state in VAR_HANDLE/ASSIGN_VARIABLE "
                      "across invoke() (measured, LSTM), initial state = the Keras state at "
                      "conversion: reset_states() first")
_STATEFUL_NOTE = ("stateful: rebuild stateless; the fused op's variable tensors carry h/c "
                  "across invoke() (matched Keras stateful); reset_all_variables() = reset_states()")


def _rule_lstm(info: LayerInfo) -> Finding:
    cfg = info.config
    why, overrides = _rnn_route(info, "LSTM")
    if cfg.get("unroll"):
        overrides["unroll"] = False
    if float(cfg.get("recurrent_dropout") or 0) > 0:
        # training-only; tf-keras skips the fused path for it, inference is identical at 0
        overrides["recurrent_dropout"] = 0.0
    blockers = []
    if _act(cfg.get("activation", "tanh")) != "tanh":
        blockers.append(f"activation={_act(cfg.get('activation'))}")
    if _act(cfg.get("recurrent_activation", "sigmoid")) != "sigmoid":
        blockers.append(f"recurrent_activation={_act(cfg.get('recurrent_activation'))}")
    if cfg.get("use_bias") is False:
        blockers.append("use_bias=False")
    if blockers:
        why.append(f"fused kernel is tanh/sigmoid with bias only: {', '.join(blockers)} "
                   "gives a WHILE loop (int8 SIGSEGV)")
    if cfg.get("return_state"):
        why.append(RETURN_STATE_WHY)
    if why:
        if overrides.get("unroll") is False:
            del overrides["unroll"]
        if overrides.pop("stateful", None) is False:
            why.append(_STATEFUL_UNROLLED)
        return Finding(UNROLLED, "; ".join(why) + f". {UNROLL_COST}", {**overrides, "unroll": True})
    parts = ["UNIDIRECTIONAL_SEQUENCE_LSTM (tanh/sigmoid, bias, batch 1; int8 ok)"]
    if cfg.get("go_backwards"):
        parts.append("go_backwards adds REVERSE_V2")
    if cfg.get("time_major"):
        parts.append("time_major input [T, 1, F] (the batch-1 pin is on axis 1)")
    if "stateful" in overrides:
        parts.append(_STATEFUL_NOTE)
    if "recurrent_dropout" in overrides:
        parts.append("recurrent_dropout is training-only: rebuild with 0 (tf-keras would loop)")
    if overrides.get("unroll") is False:
        parts.append("model sets unroll=True: rebuild with unroll=False")
    if float(cfg.get("dropout") or 0) > 0:
        parts.append("dropout is training-only")
    return Finding(FUSED, "; ".join(parts), overrides)


def _rule_loop_only(kind: str, what: str):
    def rule(info: LayerInfo) -> Finding:
        why, ov = _rnn_route(info, kind)
        if ov.pop("stateful", None) is False:
            why.append(_STATEFUL_UNROLLED)
        return Finding(UNROLLED, "; ".join([what] + why) + f". {UNROLL_COST}", {**ov, "unroll": True})
    return rule


_rule_gru = _rule_loop_only("GRU", "no fused GRU op in TFLite: WHILE loop, int8 SIGSEGV")
_rule_simple_rnn = _rule_loop_only("SimpleRNN", "Keras SimpleRNN is never fused: WHILE loop, "
                                   "int8 SIGSEGV")


_KNOWN_CELLS = {"LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells", "PeepholeLSTMCell"}


def _rule_rnn(info: LayerInfo) -> Finding:
    why, ov = _rnn_route(info, "RNN")
    if ov.pop("stateful", None) is False:
        why.append(_STATEFUL_UNROLLED)
    cell = info.config.get("cell")
    cells = cell if isinstance(cell, list) else [cell]
    names = []
    for c in cells:
        name, ccfg = _sub(c)
        if name == "StackedRNNCells":
            names += [_sub(x)[0] for x in ccfg.get("cells", [])]
        else:
            names.append(name)
    unknown = [n for n in names if n not in _KNOWN_CELLS]
    if unknown:
        return Finding(REFUSED, f"RNN with custom cell {', '.join(unknown)}: never fused (WHILE, "
                       "int8 SIGSEGV as for every non-LSTM RNN) and its ops are not checked; "
                       "unroll=True may work: convert to find out")
    head = (f"generic RNN({'/'.join(names)}) is never fused (only the LSTM layer is): "
            "WHILE loop, int8 SIGSEGV")
    return Finding(UNROLLED, "; ".join([head] + why) + f". {UNROLL_COST}", {**ov, "unroll": True})


def _rule_bidirectional(info: LayerInfo) -> Finding:
    parts = [("forward", info.config.get("layer"))]
    if info.config.get("backward_layer"):
        parts.append(("backward", info.config["backward_layer"]))
    findings = []
    for label, entry in parts:
        cls, cfg = _sub(entry)
        inner = LayerInfo(f"{info.name}/{label}", cls, cfg, info.masked, None, info.framework)
        findings.append((label, cls, _rule_for(cls)(inner)))
    worst = max(findings, key=lambda f: _RANK[f[2].verdict])[2]
    ov = {}
    for _, _, f in findings:
        ov.update(f.overrides)
    if worst.verdict == FUSED:
        return Finding(FUSED, "2x UNIDIRECTIONAL_SEQUENCE_LSTM + REVERSE_V2; int8 drift measured "
                       "~3x a single LSTM's", ov)
    return Finding(worst.verdict, f"wraps {findings[0][1]}: {worst.reason}", ov)


def _rule_time_distributed(info: LayerInfo) -> Finding:
    cls, cfg = _sub(info.config.get("layer"))
    inner = _rule_for(cls)(LayerInfo(f"{info.name}/inner", cls, cfg, False, None, info.framework))
    return Finding(inner.verdict, f"TimeDistributed({cls}): {inner.reason}", inner.overrides)


def _rule_native(reason):
    return lambda info: Finding(NATIVE, reason)


def _rule_masking(info: LayerInfo) -> Finding:
    return Finding(NATIVE, "NOT_EQUAL/REDUCE_ANY ops; a mask reaching an RNN is refused there")


def _rule_embedding(info: LayerInfo) -> Finding:
    if info.config.get("mask_zero"):
        return Finding(NATIVE, "GATHER; mask_zero=True makes a mask, refused at the RNN it reaches")
    return Finding(NATIVE, "GATHER (integer input: the int8 input quantization does not apply)")


def _rule_lambda(info: LayerInfo) -> Finding:
    return _rule_custom(info, what="Lambda")


# TF graph ops (as traced) that the converter maps to TFLite builtins; anything else in a
# custom layer needs SELECT_TF_OPS (Flex), which TFLite Micro and int8 builtins lack.
_TFLITE_OK_TF_OPS = set("""
Placeholder Const Identity IdentityN NoOp ReadVariableOp VarHandleOp StopGradient
Add AddV2 Sub Mul RealDiv Div FloorDiv FloorMod Maximum Minimum Neg Abs Square Sqrt Rsqrt
SquaredDifference Exp Log Pow Sin Cos Floor Ceil Round Sign Reciprocal Log1p
Sigmoid Tanh Relu Relu6 Elu Selu LeakyRelu Softmax LogSoftmax Gelu Softplus
MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 BiasAdd Einsum
Reshape Transpose ConcatV2 Pack Unpack Split SplitV Slice StridedSlice Squeeze ExpandDims
Tile Pad PadV2 MirrorPad Fill ZerosLike OnesLike Shape Range Cast GatherV2 Gather GatherNd
Mean Sum Max Min Prod ArgMax ArgMin Any All Cumsum ReverseV2
Select SelectV2 Greater GreaterEqual Less LessEqual Equal NotEqual LogicalAnd LogicalOr LogicalNot
Conv2D Conv3D DepthwiseConv2dNative AvgPool MaxPool BroadcastTo L2Loss
""".split())


def _trace_ops(layer) -> list[str]:
    """TF op types of one call of `layer` on a batch-1 input of its recorded shape."""
    import tensorflow as tf
    shape = list(layer.input.shape)
    if shape and shape[0] is None:
        shape[0] = 1
    if any(d is None for d in shape):
        raise ValueError(f"input shape {shape} is not static")
    dtype = getattr(layer.input, "dtype", "float32")
    dtype = getattr(dtype, "name", dtype)
    fn = tf.function(lambda x: layer(x))
    graph = fn.get_concrete_function(tf.TensorSpec(shape, dtype)).graph
    return sorted({op.type for op in graph.get_operations()})


def _rule_custom(info: LayerInfo, what: str = "custom layer") -> Finding:
    if info.layer is None:
        return Finding(REFUSED, f"{what} {info.cls} cannot be imported or traced here: its ops are "
                       "unknown (load the model with its custom_objects to check them)")
    try:
        ops = _trace_ops(info.layer)
    except Exception as e:  # noqa: BLE001 - any tracing failure means: cannot verify
        return Finding(REFUSED, f"{what} {info.cls}: tracing its call failed "
                       f"({type(e).__name__}: {' '.join(str(e).split())[:80]}); ops unknown")
    unknown = [o for o in ops if o not in _TFLITE_OK_TF_OPS]
    if unknown:
        return Finding(REFUSED, f"{what} {info.cls} uses TF ops with no TFLite builtin: "
                       f"{', '.join(unknown[:6])} (needs Flex/SELECT_TF_OPS: not in int8 builtins "
                       "nor TFLite Micro)")
    shown = [o for o in ops if o not in ("Placeholder", "Const", "Identity", "NoOp",
                                         "ReadVariableOp")]
    return Finding(NATIVE, f"{what} {info.cls}: traced ops all map to TFLite builtins "
                   f"({', '.join(shown[:6]) or 'none'})")


_NATIVE_LAYERS = {
    "InputLayer": "graph input",
    "Dense": "FULLY_CONNECTED",
    "Dropout": "identity at inference",
    "SpatialDropout1D": "identity at inference",
    "GaussianNoise": "identity at inference",
    "GaussianDropout": "identity at inference",
    "AlphaDropout": "identity at inference",
    "ActivityRegularization": "identity at inference",
    "Flatten": "RESHAPE",
    "Reshape": "RESHAPE",
    "Permute": "TRANSPOSE",
    "RepeatVector": "TILE/broadcast",
    "Conv1D": "CONV_2D (via RESHAPE/EXPAND_DIMS)",
    "Conv2D": "CONV_2D",
    "SeparableConv1D": "DEPTHWISE_CONV_2D + CONV_2D",
    "DepthwiseConv1D": "DEPTHWISE_CONV_2D",
    "MaxPooling1D": "MAX_POOL_2D", "AveragePooling1D": "AVERAGE_POOL_2D",
    "GlobalAveragePooling1D": "MEAN", "GlobalMaxPooling1D": "REDUCE_MAX",
    "ZeroPadding1D": "PAD", "Cropping1D": "STRIDED_SLICE", "UpSampling1D": "TILE/RESHAPE",
    "Activation": "elementwise activation", "ReLU": "RELU", "LeakyReLU": "LEAKY_RELU",
    "ELU": "ELU", "PReLU": "PRELU", "Softmax": "SOFTMAX",
    "BatchNormalization": "folded into MUL/ADD",
    "LayerNormalization": "MEAN/SQUARED_DIFFERENCE/RSQRT ops",
    "Concatenate": "CONCATENATION", "Add": "ADD", "Subtract": "SUB", "Multiply": "MUL",
    "Average": "ADD/MUL", "Maximum": "MAXIMUM", "Minimum": "MINIMUM",
}

RULES: dict[str, Callable[[LayerInfo], Finding]] = {
    "LSTM": _rule_lstm, "LSTMV1": _rule_lstm, "CuDNNLSTM": _rule_lstm,
    "GRU": _rule_gru, "GRUV1": _rule_gru,
    "SimpleRNN": _rule_simple_rnn,
    "RNN": _rule_rnn,
    "Bidirectional": _rule_bidirectional,
    "TimeDistributed": _rule_time_distributed,
    "Masking": _rule_masking,
    "Embedding": _rule_embedding,
    "Lambda": _rule_lambda,
    "TFOpLambda": _rule_lambda,
    "ConvLSTM1D": lambda i: Finding(REFUSED, "ConvLSTM has no TFLite kernel and is not handled "
                                    "by the rebuild"),
    **{name: _rule_native(reason) for name, reason in _NATIVE_LAYERS.items()},
}


def _rule_for(cls: str) -> Callable[[LayerInfo], Finding]:
    return RULES.get(cls, _rule_custom)


# Which layers pass an incoming mask on (Keras semantics, both versions); RNNs do only
# with return_sequences=True.
_MASK_PASS = {"Dense", "Dropout", "SpatialDropout1D", "Activation", "GaussianNoise",
              "GaussianDropout", "AlphaDropout", "TimeDistributed", "Masking", "ReLU",
              "LeakyReLU", "Softmax", "BatchNormalization", "LayerNormalization", "Add",
              "Concatenate", "Multiply", "Subtract", "Average", "Maximum", "Minimum", "Lambda"}
_RNNS = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "LSTMV1", "GRUV1", "CuDNNLSTM"}


def _makes_mask(cls, cfg):
    return cls == "Masking" or (cls == "Embedding" and bool(cfg.get("mask_zero")))


def _passes_mask(cls, cfg):
    if cls in _RNNS:
        inner = _sub(cfg["layer"])[1] if cls == "Bidirectional" else cfg
        return bool(inner.get("return_sequences"))
    return cls in _MASK_PASS


# ------------------------------------------------------------------------------------------
def _framework(model) -> str:
    mod = type(model).__module__
    for base in type(model).__mro__:
        if base.__module__.startswith("tf_keras"):
            return "tf_keras"
    return "keras3" if mod.startswith("keras") or "keras" in mod else "tf_keras"


def _live_mask(layer):
    """True/False if the layer's symbolic input carries a Keras mask; None if unreadable."""
    try:
        inp = layer.input
    except Exception:  # noqa: BLE001 - shared layers / no inbound node
        return None
    tensors = inp if isinstance(inp, (list, tuple)) else [inp]
    try:
        return any(getattr(t, "_keras_mask", None) is not None for t in tensors)
    except Exception:  # noqa: BLE001
        return None


def _inbound_names(layer_cfg) -> list[str]:
    """Names of the layers feeding a layer, from a functional config (both formats)."""
    names = []

    def walk(x):
        if isinstance(x, dict):
            if "keras_history" in x:
                names.append(x["keras_history"][0])
                return
            if "config" in x and isinstance(x["config"], dict) and "keras_history" in x["config"]:
                names.append(x["config"]["keras_history"][0])
                return
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            if len(x) >= 3 and isinstance(x[0], str) and isinstance(x[1], int):
                names.append(x[0])
                return
            for v in x:
                walk(v)
    walk(layer_cfg.get("inbound_nodes", []))
    return names


def _layer_entries(model_cfg: dict, model_cls: str) -> list[dict]:
    cfg = model_cfg.get("config", model_cfg)
    layers = cfg.get("layers", [])
    return layers if isinstance(layers, list) else []


def _config_masks(entries: list[dict], sequential: bool) -> dict[str, bool]:
    """Does a mask reach each layer? Propagated through the config graph."""
    out_mask, reach = {}, {}
    prev = None
    for e in entries:
        cls, cfg = e.get("class_name", "?"), e.get("config", {}) or {}
        name = cfg.get("name", e.get("name", "?"))
        srcs = [prev] if sequential and prev else _inbound_names(e)
        masked = any(out_mask.get(s, False) for s in srcs)
        reach[name] = masked
        out_mask[name] = _makes_mask(cls, cfg) or (masked and _passes_mask(cls, cfg))
        prev = name
    return reach


def lint_model(model) -> LintReport:
    """Lint a live tf-keras or Keras 3 model (no rebuild, no conversion)."""
    fw = _framework(model)
    layers = list(getattr(model, "layers", []))
    try:
        mcfg = model.get_config()
    except Exception:  # noqa: BLE001 - subclassed models have no config
        mcfg = {}
    sequential = type(model).__name__ == "Sequential"
    cfg_masks = _config_masks(_layer_entries(mcfg, type(model).__name__), sequential)
    infos = []
    for layer in layers:
        cls = type(layer).__name__
        try:
            cfg = layer.get_config()
        except Exception:  # noqa: BLE001 - custom layer without get_config
            cfg = {"name": layer.name}
        masked = _live_mask(layer)
        if masked is None:
            masked = cfg_masks.get(layer.name, False)
        infos.append(LayerInfo(layer.name, cls, cfg, masked, layer, fw))
    notes = _model_notes(model, fw, layers)
    return _lint_infos(infos, fw, notes)


def lint_config(model_config: dict) -> LintReport:
    """Lint from a model config alone (a .keras config.json or an .h5 model_config), for
    files whose custom classes cannot be imported. Custom layers are refused (untraceable)."""
    cls = model_config.get("class_name", "")
    entries = _layer_entries(model_config, cls)
    masks = _config_masks(entries, cls == "Sequential")
    infos = []
    for e in entries:
        lcls, lcfg = e.get("class_name", "?"), e.get("config", {}) or {}
        name = lcfg.get("name", e.get("name", "?"))
        if lcls == "InputLayer":
            continue
        infos.append(LayerInfo(name, lcls, lcfg, masks.get(name, False), None, "config"))
    return _lint_infos(infos, "config", ["linted from the saved config only (model did not load)"])


def _lint_infos(infos, fw, notes) -> LintReport:
    rows, overrides = [], {}
    for info in infos:
        if info.cls == "InputLayer":
            continue
        f = _rule_for(info.cls)(info)
        rows.append(LintRow(info.name, info.cls, f.verdict, f.reason))
        if f.overrides:
            overrides[info.name] = dict(f.overrides)
    return LintReport(rows, fw, notes, overrides)


def _model_notes(model, fw, layers) -> list[str]:
    notes = []
    if fw == "keras3":
        notes.append("Keras 3 model: converted directly every RNN is a WHILE loop (int8 SIGSEGV); "
                     "verdicts are for the tf-keras rebuild (batch 1) that export performs")
    if type(model).__name__ not in ("Sequential", "Functional", "Model") and not hasattr(
            model, "_is_graph_network"):
        notes.append(f"subclassed model {type(model).__name__}: only its tracked layers are listed")
    try:
        shapes = [model.input_shape] if not isinstance(model.input_shape, list) else model.input_shape
        for s in shapes:
            if s and s[0] not in (1, None):
                notes.append(f"input batch {s[0]}: export pins batch 1 (the fused op needs it)")
            elif s and s[0] is None:
                notes.append("batch dimension is None: export pins it to 1 (None fails: "
                             "TensorListReserve needs a static element_shape)")
                break
    except Exception:  # noqa: BLE001 - no defined input
        pass
    return notes


# ------------------------------------------------------------------------------------------
def _read_saved_config(path: str) -> dict | None:
    """The model config stored in a .keras zip or an .h5 file, without importing classes."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return json.loads(z.read("config.json"))
        import h5py
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                return None
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except Exception:  # noqa: BLE001
        return None


def _load(path: str):
    """Load a model: (model, errors). Tries tf-keras first for .h5 / SavedModel."""
    errors = []
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise BadInput(path, "directory is not a SavedModel (no saved_model.pb)")
        loaders = ("tf_keras", "keras3")
    elif ext == ".keras":
        loaders = ("keras3",)
    elif ext in (".h5", ".hdf5"):
        loaders = ("tf_keras", "keras3")
    else:
        raise BadInput(path, f"unsupported model file type {ext or '(none)'!r}: "
                       "expected .keras, .h5 or a SavedModel directory")
    for name in loaders:
        try:
            if name == "tf_keras":
                import tf_keras
                return tf_keras.models.load_model(path, compile=False), errors
            import keras
            return keras.models.load_model(path, compile=False), errors
        except Exception as e:  # noqa: BLE001 - try the next loader
            errors.append(f"{name}: {type(e).__name__}: {' '.join(str(e).split())[:160]}")
    return None, errors


def lint_file(path) -> LintReport:
    """Load a .keras (Keras 3), .h5 (tf-keras, then Keras 3) or SavedModel dir and lint it.
    A model whose custom classes cannot be imported is linted from its saved config."""
    path = str(path)
    if not os.path.exists(path):
        raise BadInput(path, "model file not found")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise BadInput(path, "model file is empty")
    model, errors = _load(path)
    if model is not None:
        if not hasattr(model, "layers"):
            raise BadInput(path, "SavedModel is not a Keras model (no layers to lint)")
        return lint_model(model)
    cfg = None if os.path.isdir(path) else _read_saved_config(path)
    if cfg and cfg.get("config", {}).get("layers"):
        report = lint_config(cfg)
        report.notes.append("load failed: " + (errors[-1] if errors else "unknown error"))
        return report
    raise BadInput(path, "cannot load as a Keras model (corrupt or unsupported): " +
                   (errors[-1] if errors else "unknown error"))
