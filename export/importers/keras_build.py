"""The layer chain read from an ONNX graph built as a tf-keras model (batch 1, weights set)."""
from __future__ import annotations

from export.importers.onnx_ir import Activation, Dense, Recurrent, TimeStep


def build_keras(graph, name="imported"):
    """A tf-keras functional model computing graph.layers on [1, T, F] windows."""
    from export.tfenv import tf_and_keras2
    tf, k = tf_and_keras2()
    inp = k.Input(shape=(graph.timesteps, graph.features), batch_size=1, name="input")
    x, to_set = inp, []
    for i, layer in enumerate(graph.layers):
        x, weights = _BUILDERS[type(layer)](tf, k, layer, x, f"{_kind(layer)}_{i}")
        to_set += weights
    model = k.Model(inp, x, name=name)
    for keras_layer, weights in to_set:
        keras_layer.set_weights(weights)
    return model


def _kind(layer):
    return getattr(layer, "cell", None) and layer.cell.lower() or type(layer).__name__.lower()


def _recurrent(tf, k, layer: Recurrent, x, name):
    cls = {"LSTM": k.layers.LSTM, "GRU": k.layers.GRU}[layer.cell]
    extra = {"reset_after": layer.reset_after} if layer.cell == "GRU" else {}

    def one(direction, lname):
        return cls(layer.units, return_sequences=layer.return_sequences,
                   go_backwards=direction == "backward", name=lname, **extra)
    if len(layer.directions) == 2:
        keras_layer = k.layers.Bidirectional(one("forward", name + "_fw"), merge_mode="concat", name=name)
    else:
        keras_layer = one(layer.directions[0], name)
    return keras_layer(x), [(keras_layer, [w for d in layer.weights for w in d])]


def _dense(tf, k, layer: Dense, x, name):
    keras_layer = k.layers.Dense(layer.kernel.shape[1], use_bias=layer.bias is not None, name=name)
    y = keras_layer(x)
    return y, [(keras_layer, [layer.kernel] + ([layer.bias] if layer.bias is not None else []))]


def _activation(tf, k, layer: Activation, x, name):
    if layer.name == "log_softmax":   # no tf-keras activation of that name: the TF op, by name
        return tf.nn.log_softmax(x, axis=-1), []
    return k.layers.Activation(layer.name, name=name)(x), []


def _time_step(tf, k, layer: TimeStep, x, name):
    steps = int(x.shape[1])
    y = k.layers.Cropping1D((layer.index, steps - 1 - layer.index), name=name)(x)
    return k.layers.Reshape((int(x.shape[-1]),), name=name + "_flat")(y), []


_BUILDERS = {Recurrent: _recurrent, Dense: _dense, Activation: _activation, TimeStep: _time_step}
