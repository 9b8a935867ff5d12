"""A seeded tiny tf-keras LSTM for the export tests (built in the test process: TensorFlow
is imported). `edge export` takes tf-keras or Keras 3 models; tf-keras with batch 1 is what
every converter here is given."""


def tiny_lstm(path, steps: int, features: int, units: int, seed: int = 0):
    """LSTM(units) -> Dense(1) on [1, steps, features], seeded, saved as .h5 at path."""
    from export.tfenv import seed_everything, tf_and_keras2
    tf, K = tf_and_keras2()
    seed_everything(seed)
    model = K.Sequential([K.layers.InputLayer(input_shape=(steps, features), batch_size=1),
                          K.layers.LSTM(units), K.layers.Dense(1)])
    model.save(path)
    return model
