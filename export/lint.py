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

The verdicts come from the measurements below (export/lint_probe.py; re-run it with
`python -m export.lint_probe` when tensorflow / tf-keras / tf2onnx versions move).

MEASURED  2026-11-xx, tensorflow-cpu 2.21.0, tf-keras 2.21.0, tf2onnx 1.17.0 (opset 17),
ai-edge-litert 2.3.0. tf-keras models, batch 1, input [1, 16, 3], LSTM/GRU/SimpleRNN(8) ->
Dense(1), random weights; each conversion in a child process, run and compared with Keras on
an input whose last 5 steps are zeros. "int8" = full int8 (representative dataset,
TFLITE_BUILTINS_INT8, int8 in/out). "unroll" = the same model with unroll=True.
(table filled in below, see MEASURED)
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Callable

from edge.errors import BadInput

# ------------------------------------------------------------------------------------------
# Measured facts (python -m export.lint_probe). One entry per probe case:
#   float / int8 / onnx: what the plain model (unroll=False) gives;
#   unroll_float / unroll_int8: the same with unroll=True.
# "fused" = UNIDIRECTIONAL_SEQUENCE_LSTM present; "WHILE" = loop subgraph; "flat" = neither
# (unrolled straight-line graph); "SIGSEGV" = the converter killed the process;
# "WRONG" = converted and ran, but the output differs from Keras.
MEASURED_ON = {"date": "PENDING", "tensorflow": "2.21.0", "tf_keras": "2.21.0",
               "tf2onnx": "1.17.0", "ai_edge_litert": "2.3.0"}
MEASURED: dict[str, dict[str, str]] = {}

# ------------------------------------------------------------------------------------------
FUSED, UNROLLED, NATIVE, REFUSED = "fused", "unrolled", "native", "refused"
_RANK = {NATIVE: 0, FUSED: 1, UNROLLED: 2, REFUSED: 3}

UNROLL_COST = ("unroll=True: no fused op, every time step is copied into the graph "
               "(500-1000 ops, TFLite Micro arena 137-245 KB instead of ~4 KB)")


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


def _settings(cfg, *keys):
    return ", ".join(f"{k}={cfg.get(k)!r}" for k in keys if k in cfg)


# ------------------------------------------------------------------------------------------
# Rules. Each takes a LayerInfo and returns a Finding.
def _rnn_common_refusals(info: LayerInfo, kind: str) -> Finding | None:
    cfg = info.config
    if cfg.get("stateful"):
        return Finding(REFUSED, f"stateful=True: {kind} state lives in Keras variables; "
                       "measured WHILE loop (int8 SIGSEGV). Export stateless and carry h/c in "
                       "the program (the fused op keeps them between invoke() calls)")
    if info.masked:
        return Finding(REFUSED, f"receives a mask (Masking/Embedding mask_zero): the fused "
                       f"kernel has no mask input and the converted model ignores it "
                       f"(measured: padded steps change the output); remove the mask and "
                       f"trim or pre-pad sequences instead")
    return None


def _rule_lstm(info: LayerInfo) -> Finding:
    cfg = info.config
    bad = _rnn_common_refusals(info, "LSTM")
    if bad:
        return bad
    overrides = {}
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
        return Finding(UNROLLED, f"fused kernel needs tanh/sigmoid with bias; "
                       f"{', '.join(blockers)} gives a WHILE loop (int8 SIGSEGV). {UNROLL_COST}",
                       {**overrides, "unroll": True})
    extras = []
    if cfg.get("return_state"):
        extras.append("return_state")
    if cfg.get("time_major"):
        extras.append("time_major")
    if extras:
        return Finding(UNROLLED, f"{'/'.join(extras)}: PENDING", {**overrides, "unroll": True})
    why = ["UNIDIRECTIONAL_SEQUENCE_LSTM (tanh/sigmoid, bias, batch 1)"]
    if cfg.get("go_backwards"):
        why.append("go_backwards adds a REVERSE_V2")
    if "recurrent_dropout" in overrides:
        why.append("recurrent_dropout is training-only: rebuild with 0")
    if overrides.get("unroll") is False:
        why.append("model sets unroll=True: rebuild with unroll=False")
    if float(cfg.get("dropout") or 0) > 0:
        why.append("dropout is training-only")
    return Finding(FUSED, "; ".join(why), overrides)


def _rule_gru(info: LayerInfo) -> Finding:
    bad = _rnn_common_refusals(info, "GRU")
    if bad:
        return bad
    return Finding(UNROLLED, f"no fused GRU op in TFLite: WHILE loop, int8 SIGSEGV. {UNROLL_COST}",
                   {"unroll": True})


def _rule_simple_rnn(info: LayerInfo) -> Finding:
    bad = _rnn_common_refusals(info, "SimpleRNN")
    if bad:
        return bad
    return Finding(UNROLLED, f"no fused RNN op from Keras: WHILE loop, int8 SIGSEGV. {UNROLL_COST}",
                   {"unroll": True})


_KNOWN_CELLS = {"LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells", "PeepholeLSTMCell"}


def _rule_rnn(info: LayerInfo) -> Finding:
    bad = _rnn_common_refusals(info, "RNN")
    if bad:
        return bad
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
        return Finding(REFUSED, f"RNN with custom cell {', '.join(unknown)}: ops unknown, "
                       "a WHILE loop at best (int8 SIGSEGV)")
    return Finding(UNROLLED, f"generic RNN({'/'.join(names)}) is never fused (only the LSTM layer "
                   f"is): WHILE loop, int8 SIGSEGV. {UNROLL_COST}", {"unroll": True})


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
    head = "two fused ops + REVERSE_V2" if worst.verdict == FUSED else worst.reason
    if worst.verdict == FUSED:
        return Finding(FUSED, f"{head} ({findings[0][1]}: {findings[0][2].reason})", ov)
    return Finding(worst.verdict, f"wraps {findings[0][1]}: {head}", ov)


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
