"""The lint rules: one per Keras layer class (the RULES registry), each turning a layer's
config into a verdict (fused / unrolled / native / refused), a reason and the config changes
the tf-keras rebuild should make. The facts behind them are in export/lint_measured.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from export.activations import activation_name as _act, keras3_problems

FUSED, UNROLLED, NATIVE, REFUSED = "fused", "unrolled", "native", "refused"
VERDICT_RANK = {NATIVE: 0, FUSED: 1, UNROLLED: 2, REFUSED: 3}  # worst last

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


# ------------------------------------------------------------------------------------------
# Helpers on configs (tf-keras and Keras 3 spell them alike for the keys used here)
def sub_config(cfg_entry) -> tuple[str, dict]:
    """(class name, config) of a nested layer/cell entry in a config."""
    if isinstance(cfg_entry, dict):
        return cfg_entry.get("class_name", "?"), cfg_entry.get("config", {}) or {}
    return type(cfg_entry).__name__, getattr(cfg_entry, "get_config", dict)()


# ------------------------------------------------------------------------------------------
# Rules. Each takes a LayerInfo and returns a Finding.
def _rnn_route(info: LayerInfo) -> tuple[list[str], dict]:
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


def _unrolled_route(info: LayerInfo) -> tuple[list[str], dict]:
    """_rnn_route for a layer that is unrolled: the unrolled graph keeps a stateful layer's
    state itself, so there is no stateless rebuild, only a note."""
    why, ov = _rnn_route(info)
    if ov.pop("stateful", None) is False:
        why.append(_STATEFUL_UNROLLED)
    return why, ov


def _rule_lstm(info: LayerInfo) -> Finding:
    cfg = info.config
    why, overrides = _rnn_route(info)
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
    if "stateful" in overrides:
        parts.append(_STATEFUL_NOTE)
    if "recurrent_dropout" in overrides:
        parts.append("recurrent_dropout is training-only: rebuild with 0 (tf-keras would loop)")
    if overrides.get("unroll") is False:
        parts.append("model sets unroll=True: rebuild with unroll=False")
    if float(cfg.get("dropout") or 0) > 0:
        parts.append("dropout is training-only")
    return Finding(FUSED, "; ".join(parts), overrides)


def _rule_loop_only(what: str):
    def rule(info: LayerInfo) -> Finding:
        why, ov = _unrolled_route(info)
        return Finding(UNROLLED, "; ".join([what] + why) + f". {UNROLL_COST}", {**ov, "unroll": True})
    return rule


_rule_gru = _rule_loop_only("no fused GRU op in TFLite: WHILE loop, int8 SIGSEGV")
_rule_simple_rnn = _rule_loop_only("Keras SimpleRNN is never fused: WHILE loop, "
                                   "int8 SIGSEGV")


_KNOWN_CELLS = {"LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells", "PeepholeLSTMCell"}


def _rule_rnn(info: LayerInfo) -> Finding:
    why, ov = _unrolled_route(info)
    cell = info.config.get("cell")
    cells = cell if isinstance(cell, list) else [cell]
    names = []
    for c in cells:
        name, ccfg = sub_config(c)
        if name == "StackedRNNCells":
            names += [sub_config(x)[0] for x in ccfg.get("cells", [])]
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
        cls, cfg = sub_config(entry)
        inner = LayerInfo(f"{info.name}/{label}", cls, cfg, info.masked, None, info.framework)
        findings.append((label, cls, rule_for(cls)(inner)))
    worst = max(findings, key=lambda f: VERDICT_RANK[f[2].verdict])[2]
    ov = {}
    for _, _, f in findings:
        ov.update(f.overrides)
    if worst.verdict == FUSED:
        return Finding(FUSED, "2x UNIDIRECTIONAL_SEQUENCE_LSTM + REVERSE_V2; int8: export realigns the "
                       "converter's LSTM state quantization (drift then measured as one LSTM's)", ov)
    return Finding(worst.verdict, f"wraps {findings[0][1]}: {worst.reason}", ov)


def _rule_time_distributed(info: LayerInfo) -> Finding:
    cls, cfg = sub_config(info.config.get("layer"))
    inner = rule_for(cls)(LayerInfo(f"{info.name}/inner", cls, cfg, False, None, info.framework))
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


def rule_for(cls: str) -> Callable[[LayerInfo], Finding]:
    return RULES.get(cls, _rule_custom)


def finding_for(info: LayerInfo) -> Finding:
    """The layer's rule, after what export itself cannot take: a Keras 3 activation the tf-keras
    rebuild cannot reproduce exactly (export/activations.py), or a time-major layer."""
    problems = keras3_problems(info.cls, info.config) if info.framework == "keras3" else []
    if problems:
        return Finding(REFUSED, "no exact tf-keras rebuild: " + "; ".join(problems))
    if _time_major(info.config):
        return Finding(REFUSED, TIME_MAJOR_WHY)
    return rule_for(info.cls)(info)


# The converter fuses a time_major LSTM (lint_measured.py), but export feeds and checks
# batch-major windows: its batch-1 pin lands on the time axis and the rebuild check fails.
TIME_MAJOR_WHY = ("time_major=True: export works on batch-major windows [1, T, F] (its batch-1 pin "
                  "would land on the time axis); rebuild the model with time_major=False, same weights")


def _time_major(cfg) -> bool:
    inner = [sub_config(cfg[k])[1] for k in ("layer", "backward_layer") if isinstance(cfg.get(k), dict)]
    return bool(cfg.get("time_major")) or any(c.get("time_major") for c in inner)
