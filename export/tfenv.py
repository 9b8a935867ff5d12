"""Import TensorFlow and tf-keras quietly, single-threaded and deterministic."""
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")

# What a shared worker of the converters imports before its first call (groundfloor.isolate.Worker)
WORKER_PRELOAD = ("export.tfenv", "tensorflow", "tf_keras")


def tf_and_keras2():
    import tensorflow as tf
    import tf_keras
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process
    tf.get_logger().setLevel("ERROR")
    return tf, tf_keras


def seed_everything(seed: int):
    tf, tf_keras = tf_and_keras2()
    tf_keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:
        pass



def graph_call(model):
    """The model as one traced graph function instead of eager calls: the same kernels (outputs
    bit-identical on the reference models, see FIELD_NOTES) at a fraction of the per-call cost,
    which is what dominated running 1,752 windows one at a time."""
    tf, _ = tf_and_keras2()
    return tf.function(lambda inputs: model(inputs, training=False))


def windows_outputs(model, windows) -> np.ndarray:
    """The model's outputs on each window in turn (batch 1), as one array."""
    call = graph_call(model)
    x = np.asarray(windows, np.float32)
    return np.concatenate([np.asarray(call(x[i:i + 1])) for i in range(len(x))])
