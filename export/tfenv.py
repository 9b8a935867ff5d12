"""Import TensorFlow and tf-keras quietly, single-threaded and deterministic."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")


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
