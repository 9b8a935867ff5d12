"""export/keras_bridge.py: Keras 3 models rebuilt in tf-keras with batch 1 compute the same
thing; what cannot be rebuilt, loaded or verified is refused with BadInput."""
import numpy as np
import pytest

from groundfloor.errors import BadInput
from export import keras_bridge

T, F = 10, 3


@pytest.fixture(scope="module")
def keras3():
    import keras
    keras.utils.set_random_seed(0)
    return keras


def _x(n=6):
    return np.random.default_rng(1).standard_normal((n, T, F)).astype(np.float32)


def test_keras3_rebuild_in_tf_keras_batch1_equals_the_original(keras3, tmp_path):
    K = keras3.layers
    model = keras3.Sequential([keras3.Input((T, F)), K.LSTM(6, return_sequences=True), K.Dropout(0.1),
                               K.LSTM(5), K.Dense(3, activation="relu"), K.Dense(1)])
    model.save(tmp_path / "m.keras")
    loaded, fmt = keras_bridge.load_any(tmp_path / "m.keras")
    assert fmt == "keras3" and not keras_bridge.is_tf_keras(loaded)
    assert keras_bridge.input_shape_of(loaded) == (T, F)
    rebuilt = keras_bridge.rebuild_batch1(loaded)
    assert keras_bridge.is_tf_keras(rebuilt)
    assert tuple(rebuilt.inputs[0].shape) == (1, T, F)  # batch pinned: the fused LSTM needs it
    x = _x()
    diff = keras_bridge.verify_same(loaded, rebuilt, x)
    assert diff <= keras_bridge.REBUILD_TOLERANCE == 1e-5
    ref = np.asarray(loaded(x, training=False))
    got = np.concatenate([np.asarray(rebuilt(w[None], training=False)) for w in x])
    assert np.max(np.abs(ref - got)) <= 1e-5 and np.std(ref) > 0


def test_rebuild_applies_lint_overrides(keras3):
    model = keras3.Sequential([keras3.Input((T, F)), keras3.layers.GRU(4, name="g"), keras3.layers.Dense(1)])
    rebuilt = keras_bridge.rebuild_batch1(model, overrides={"g": {"unroll": True}})
    assert rebuilt.get_layer("g").get_config()["unroll"] is True
    assert keras_bridge.verify_same(model, rebuilt, _x()) <= 1e-5


def test_a_custom_layer_is_refused(keras3):
    class Doubler(keras3.layers.Layer):
        def call(self, x):
            return 2.0 * x

    model = keras3.Sequential([keras3.Input((T, F)), Doubler(name="dbl"), keras3.layers.LSTM(4),
                               keras3.layers.Dense(1)])
    with pytest.raises(BadInput, match=r"layer 'dbl' \(Doubler\) has no tf-keras equivalent") as e:
        keras_bridge.rebuild_batch1(model)
    assert e.value.exit_code == 2


def test_a_rebuild_that_computes_something_else_is_refused(keras3):
    model = keras3.Sequential([keras3.Input((T, F)), keras3.layers.LSTM(4), keras3.layers.Dense(1)])
    rebuilt = keras_bridge.rebuild_batch1(model)
    w = rebuilt.get_weights()
    rebuilt.set_weights([w[0] + 0.5] + w[1:])
    with pytest.raises(BadInput, match="differs from the original model"):
        keras_bridge.verify_same(model, rebuilt, _x())


@pytest.mark.parametrize("name, content, problem", [
    ("missing.keras", None, "model file not found"),
    ("model.onnx", b"x", "unsupported model format"),
    ("broken.h5", b"not an hdf5 file", "cannot load model"),
])
def test_load_any_refuses_what_it_cannot_load(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInput, match=problem):
        keras_bridge.load_any(path)
