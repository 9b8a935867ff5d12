"""A seeded tiny tf-keras LSTM for the export tests (built in the test process: TensorFlow
is imported) and for the child builds of tests/child_build.py. `edge export` takes tf-keras or
Keras 3 models; tf-keras with batch 1 is what every converter here is given."""


def tiny_lstm(steps: int, features: int, units: int, seed: int = 0):
    """LSTM(units) -> Dense(1) on [1, steps, features], seeded."""
    from export.tfenv import seed_everything, tf_and_keras2
    tf, K = tf_and_keras2()
    seed_everything(seed)
    return K.Sequential([K.layers.InputLayer(input_shape=(steps, features), batch_size=1),
                         K.layers.LSTM(units), K.layers.Dense(1)])


def tiny_lstm_saved(tmp_path_factory, folder: str, steps: int, features: int, units: int):
    """(a new temporary folder holding tiny.h5, the model): tiny_lstm saved for the export tests."""
    root = tmp_path_factory.mktemp(folder)
    model = tiny_lstm(steps, features, units)
    model.save(root / "tiny.h5")
    return root, model
