"""Keras 3 activations that tf-keras defines differently or lacks, and how the tf-keras rebuild
of a Keras 3 model reproduces them exactly with tf-keras built-ins (so the rebuilt model stays
loadable by every conversion child without custom objects).

Measured (keras 3.15.1, tf-keras 2.21.0, x in [-30, 30]): of the activations both define, only
hard_sigmoid differs (Keras 3 relu6(x + 3) / 6, tf-keras clip(0.2 x + 0.5, 0, 1): max
difference 0.083); elu, exponential, gelu, linear, mish, relu, selu, sigmoid, softmax,
softplus, softsign, swish, tanh agree exactly, and tf-keras resolves leaky_relu, log_softmax,
relu6 and silu to the tf.nn functions, which agree exactly. The rest of Keras 3's activations
do not exist in tf-keras (KERAS3_ONLY). tests/test_keras_bridge.py re-measures both tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rescaled:
    """tf-keras's `name`(input_scale * x) equals Keras 3's `name`(x)."""
    input_scale: float
    keras3: str
    tf_keras: str


DEFINED_DIFFERENTLY = {
    "hard_sigmoid": Rescaled(5.0 / 6.0, "relu6(x + 3) / 6", "clip(0.2 x + 0.5, 0, 1)"),
}
KERAS3_ONLY = frozenset({"celu", "glu", "hard_shrink", "hard_silu", "hard_swish", "hard_tanh",
                         "log_sigmoid", "soft_shrink", "sparse_plus", "sparse_sigmoid", "sparsemax",
                         "squareplus", "tanh_shrink", "threshold"})
_ACTIVATION_KEYS = ("activation", "recurrent_activation")

# Where a pre-activation is linear in the layer's own weights, scaling those weights by
# input_scale is the exact rebuild: (layer or cell class, activation key) -> (gate blocks along
# the weights' last axis, the blocks that activation is applied to). LSTM's `activation` is not
# here: it is also applied to the cell state, which no weight scales.
GATE_BLOCKS = {
    ("Dense", "activation"): (1, (0,)),
    ("Conv1D", "activation"): (1, (0,)),
    ("SimpleRNN", "activation"): (1, (0,)),
    ("GRU", "activation"): (3, (2,)),             # z r h: the candidate
    ("GRU", "recurrent_activation"): (3, (0, 1)),  # the update and reset gates
    ("LSTM", "recurrent_activation"): (4, (0, 1, 3)),  # i f c o: input, forget, output gates
}


def activation_name(value) -> str:
    """Activation name from a config value: 'tanh', {'class_name': 'tanh'}, a function."""
    if isinstance(value, dict):   # {"class_name": "relu"} or Keras 3 {"config": "my_fn", ...}
        inner = value.get("config")
        named = inner.get("name") if isinstance(inner, dict) else inner if isinstance(inner, str) else None
        value = named or value.get("class_name")
    if callable(value):
        value = getattr(value, "__name__", str(value))
    return str(value or "linear").lower()


def _base_class(cls: str) -> str:
    for suffix in ("CellV2", "CellV1", "Cell", "V2", "V1"):
        if cls.endswith(suffix) and cls != suffix:
            return cls[: -len(suffix)]
    return cls


def keras3_problems(cls: str, cfg: dict) -> list[str]:
    """Why a Keras 3 layer (its config) has no exact tf-keras rebuild; [] when it has one.
    Wrapped layers and RNN cells are looked into."""
    problems = []
    for key in _ACTIVATION_KEYS:
        if key not in cfg:
            continue
        name = activation_name(cfg[key])
        if name in KERAS3_ONLY:
            problems.append(f"{key}={name} is a Keras 3 activation tf-keras does not have")
        elif name in DEFINED_DIFFERENTLY and cls != "Activation" \
                and (_base_class(cls), key) not in GATE_BLOCKS:
            d = DEFINED_DIFFERENTLY[name]
            problems.append(f"{key}={name}: Keras 3 computes {d.keras3}, tf-keras {d.tf_keras}; the "
                            f"rebuild reproduces it only in Activation, Dense, Conv1D, SimpleRNN, GRU "
                            "and as an LSTM's recurrent_activation")
    for nested in _nested(cfg):
        problems += keras3_problems(*nested)
    return problems


def _nested(cfg):
    for key in ("layer", "backward_layer"):
        if isinstance(cfg.get(key), dict):
            yield cfg[key].get("class_name", "?"), cfg[key].get("config", {}) or {}
    cells = cfg.get("cell")
    cells = cells if isinstance(cells, list) else [cells] if isinstance(cells, dict) else []
    for c in cells:
        inner = c.get("config", {}) or {}
        if c.get("class_name") == "StackedRNNCells":
            yield from _nested({"cell": inner.get("cells", [])})
        else:
            yield c.get("class_name", "?"), inner


def activation_layers(tf_keras, cls: str, cfg: dict):
    """The tf-keras layers for a Keras 3 Activation layer tf-keras defines differently
    (a Rescaling by input_scale, then tf-keras's activation), or None for any other layer."""
    rescaled = DEFINED_DIFFERENTLY.get(activation_name(cfg.get("activation"))) if cls == "Activation" else None
    if rescaled is None:
        return None
    name = cfg.get("name", "activation")
    return [tf_keras.layers.Rescaling(rescaled.input_scale, name=f"{name}_keras3_input_scale"),
            tf_keras.layers.Activation(cfg["activation"], name=name)]


def rescale_weights(rebuilt) -> list[str]:
    """After the Keras 3 weights are copied into the tf-keras rebuild: scale the weights feeding
    every activation tf-keras defines differently, so tf-keras computes Keras 3's function.
    Returns what was scaled ("layer.key") for the manifest."""
    done = []
    for owner, holder in _weight_holders(rebuilt.layers):
        for key in _ACTIVATION_KEYS:
            rescaled = DEFINED_DIFFERENTLY.get(activation_name(getattr(holder, key, None))) \
                if hasattr(holder, key) else None
            blocks = GATE_BLOCKS.get((_base_class(type(holder).__name__), key))
            if rescaled is None or blocks is None:
                continue
            for var in (getattr(holder, k, None) for k in ("kernel", "recurrent_kernel", "bias")):
                if var is not None:
                    var.assign(np.asarray(var) * _block_scale(var.shape[-1], *blocks, rescaled.input_scale))
            done.append(f"{owner}.{key}")
    return done


def _block_scale(width, n_blocks, scaled, factor):
    scale = np.ones(int(width), np.float32)
    size = int(width) // n_blocks
    for b in scaled:
        scale[b * size:(b + 1) * size] = factor
    return scale


def _weight_holders(layers):
    """(layer name, object holding activation + kernels): plain layers, RNN cells, wrapped layers."""
    for layer in layers:
        inner = [getattr(layer, k) for k in ("forward_layer", "backward_layer") if getattr(layer, k, None)]
        if not inner and type(layer).__name__ == "TimeDistributed":
            inner = [layer.layer]
        if inner:
            yield from ((f"{layer.name}/{o}", h) for o, h in _weight_holders(inner))
            continue
        cell = getattr(layer, "cell", None)
        cells = getattr(cell, "cells", None) or ([cell] if cell is not None else [layer])
        for c in cells:
            yield layer.name, c
