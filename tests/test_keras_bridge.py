"""export/keras_bridge.py: Keras 3 models rebuilt in tf-keras with batch 1 compute the same
thing; what cannot be rebuilt, loaded or verified is refused with BadInput."""
import numpy as np
import pytest

from groundfloor.errors import BadInput
from export import keras_bridge
from export_helpers import model_file

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
    ("model.pb", b"x", "unsupported model format"),
    ("model.onnx", b"x", "not a readable ONNX file"),
    ("broken.h5", b"not an hdf5 file", "cannot load model"),
])
def test_load_any_refuses_what_it_cannot_load(tmp_path, name, content, problem):
    with pytest.raises(BadInput, match=problem):
        keras_bridge.load_any(model_file(tmp_path, name, content))


# --------------------------------------------------------------------- Keras 3 activations
def test_the_activation_tables_are_what_keras_3_and_tf_keras_compute(keras3):
    """Re-measured: which Keras 3 activations tf-keras lacks, which it defines differently, and
    that tf-keras's function of the rescaled input is Keras 3's (what the rebuild relies on)."""
    from export import activations
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    x = tf.constant(np.linspace(-30, 30, 6001, dtype=np.float32)[None])
    missing, different = set(), {}
    for name in sorted(n for n in dir(keras3.activations) if not n.startswith("_")
                       and n not in ("get", "serialize", "deserialize")):
        try:
            mine = tf_keras.activations.get(name)
        except ValueError:
            missing.add(name)
            continue
        d = float(np.max(np.abs(np.asarray(keras3.activations.get(name)(x)) - np.asarray(mine(x)))))
        if d > 1e-6:
            different[name] = d
    assert missing == activations.KERAS3_ONLY
    assert set(different) == set(activations.DEFINED_DIFFERENTLY) == {"hard_sigmoid"}
    assert 0.08 < different["hard_sigmoid"] < 0.09   # 0.084 measured through an LSTM rebuild
    for name, r in activations.DEFINED_DIFFERENTLY.items():
        ours = np.asarray(tf_keras.activations.get(name)(x * r.input_scale))
        assert np.max(np.abs(ours - np.asarray(keras3.activations.get(name)(x)))) <= 1e-6, name


def _keras3_model(keras3, *layers):
    keras3.utils.set_random_seed(0)
    return keras3.Sequential([keras3.Input((T, F)), *layers])


@pytest.mark.parametrize("build", [
    lambda K: [K.LSTM(6, recurrent_activation="hard_sigmoid"), K.Dense(1)],
    lambda K: [K.GRU(6, activation="hard_sigmoid", recurrent_activation="hard_sigmoid"), K.Dense(1)],
    lambda K: [K.GRU(6, recurrent_activation="hard_sigmoid", reset_after=False), K.Dense(1)],
    lambda K: [K.SimpleRNN(6, activation="hard_sigmoid"), K.Dense(1)],
    lambda K: [K.Conv1D(4, 3, activation="hard_sigmoid"), K.Activation("hard_sigmoid"), K.LSTM(5),
               K.Dense(1, activation="hard_sigmoid")],
    lambda K: [K.Bidirectional(K.LSTM(4, recurrent_activation="hard_sigmoid")), K.Dense(1)],
    lambda K: [K.RNN(K.LSTMCell(4, recurrent_activation="hard_sigmoid")), K.Dense(1)],
    lambda K: [K.LSTM(4, return_sequences=True), K.TimeDistributed(K.Dense(3, activation="hard_sigmoid")),
               K.LeakyReLU(0.1), K.LSTM(3), K.Dense(2, activation="relu6")],
], ids=["lstm_recurrent", "gru_both", "gru_reset_before", "simple_rnn", "conv_activation_dense",
        "bidirectional", "rnn_lstmcell", "time_distributed_leaky_relu"])
def test_keras3_activations_tf_keras_defines_differently_are_rebuilt_exactly(keras3, tmp_path, build):
    import tf_keras
    from export.tfenv import tf_and_keras2
    tf_and_keras2()
    model = _keras3_model(keras3, *build(keras3.layers))
    x = 2.0 * _x()   # hard_sigmoid's kinks at +-2.5 (tf-keras) and +-3 (Keras 3) are crossed
    rebuilt = keras_bridge.rebuild_batch1(model, overrides={l.name: {"unroll": True} for l in model.layers
                                                            if type(l).__name__ in ("LSTM", "GRU", "SimpleRNN", "RNN")})
    assert keras_bridge.verify_same(model, rebuilt, x) <= 1e-5
    # the conversion children load the saved rebuild with plain tf-keras: no custom objects
    rebuilt.save(tmp_path / "r.h5", save_format="h5")
    again = tf_keras.models.load_model(tmp_path / "r.h5", compile=False)
    assert keras_bridge.verify_same(model, again, x) <= 1e-5


def test_without_the_rescaling_the_hard_sigmoid_rebuild_is_refused(keras3, monkeypatch):
    """The case of issue 12: Keras 3 LSTM(recurrent_activation="hard_sigmoid") rebuilt with
    tf-keras's hard_sigmoid differs by ~0.08 and the export refuses it; rescaled it is exact."""
    from export import activations
    model = _keras3_model(keras3, keras3.layers.LSTM(8, recurrent_activation="hard_sigmoid"), keras3.layers.Dense(1))
    x = 2.0 * _x(16)
    assert keras_bridge.verify_same(model, keras_bridge.rebuild_batch1(model), x) <= 1e-5
    monkeypatch.setattr(activations, "rescale_weights", lambda rebuilt: [])
    with pytest.raises(BadInput, match="differs from the original model by 0.0"):
        keras_bridge.verify_same(model, keras_bridge.rebuild_batch1(model), x)


@pytest.mark.parametrize("build, problem", [
    (lambda K: [K.LSTM(6, activation="hard_sigmoid"), K.Dense(1)], "activation=hard_sigmoid: Keras 3 computes"),
    (lambda K: [K.LSTM(6), K.Dense(2, activation="hard_silu")], "hard_silu is a Keras 3 activation tf-keras"),
])
def test_activations_with_no_exact_rebuild_are_refused_by_lint_and_rebuild(keras3, build, problem):
    from export.lint import lint_model
    model = _keras3_model(keras3, *build(keras3.layers))
    report = lint_model(model)
    assert not report.ok and problem in report.refused[0].reason
    with pytest.raises(BadInput, match=problem.replace("(", r"\(")) as e:
        keras_bridge.rebuild_batch1(model, overrides=report.overrides)
    assert report.refused[0].layer in str(e.value)


def test_a_stateful_original_is_compared_window_by_window_from_a_fresh_state():
    from export.tfenv import tf_and_keras2
    _, K = tf_and_keras2()
    K.utils.set_random_seed(0)
    model = K.Sequential([K.layers.InputLayer(input_shape=(T, F), batch_size=1),
                          K.layers.LSTM(4, stateful=True, name="s"), K.layers.Dense(1)])
    rebuilt = keras_bridge.rebuild_batch1(model, overrides={"s": {"stateful": False}})
    assert keras_bridge.verify_same(model, rebuilt, _x()) <= 1e-6
    with pytest.raises(BadInput, match="cannot be run on the data's windows"):
        keras_bridge.verify_same(model, rebuilt, np.zeros((3, T + 1, F), np.float32))


# --------------------------------------------------------------------- code in model files
def _lambda_model_h5(tmp_path, mark):
    from export.tfenv import tf_and_keras2
    _, K = tf_and_keras2()
    planted = eval(f"lambda x: (open({str(mark)!r}, 'w').close(), x)[1]")  # marshalled into the file
    model = K.Sequential([K.layers.InputLayer(input_shape=(T, F), batch_size=1),
                          K.layers.Lambda(planted, name="planted"), K.layers.LSTM(4), K.layers.Dense(1)])
    model.save(tmp_path / "lambda.h5")
    mark.unlink()   # building the model ran it once, here
    return tmp_path / "lambda.h5"


def test_load_any_refuses_code_unless_trusted(tmp_path):
    mark = tmp_path / "ran"
    path = _lambda_model_h5(tmp_path, mark)
    with pytest.raises(BadInput, match="layer 'planted' is a Lambda with Python code; loading it would run "
                                       "that code; pass --trust-model-code") as e:
        keras_bridge.load_any(path)
    assert e.value.exit_code == 2 and not mark.exists()
    model, fmt = keras_bridge.load_any(path, trust_code=True)
    assert fmt == "tf_keras_h5" and mark.exists()


def test_keras3_files_load_in_safe_mode(keras3, tmp_path, monkeypatch):
    """Even past the config check, Keras 3 refuses a lambda: safe_mode is on for .keras."""
    from export import model_code
    model = _keras3_model(keras3, keras3.layers.Lambda(lambda x: x * 2.0, name="double"), keras3.layers.Dense(1))
    model.save(tmp_path / "m.keras")
    assert model_code.find_code(tmp_path / "m.keras") == ["layer 'double' is a Lambda with Python code"]
    monkeypatch.setattr(model_code, "find_code", lambda path: [])   # as if the check missed it
    with pytest.raises(BadInput, match="cannot load model") as e:
        keras_bridge.load_any(tmp_path / "m.keras")
    assert "arbitrary code execution" in str(e.value)
    loaded, _ = keras_bridge.load_any(tmp_path / "m.keras", trust_code=True)   # safe_mode off
    x = _x(2)
    assert np.allclose(np.asarray(loaded(x)), np.asarray(model(x)))
