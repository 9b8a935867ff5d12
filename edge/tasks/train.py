"""Deterministic training of a reference task; the result is an ordinary tf-keras .h5 model
(batch 1) plus its data, which then go through the same export path as a user's model."""
import time

import numpy as np

from edge.tasks.base import ReferenceTask
from groundfloor.fileio import temp_path_for, move_into_place, write_npz


def train_task(task: ReferenceTask, model_path, data_path, progress=print) -> dict:
    from export.tfenv import seed_everything, tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    seed_everything(task.seed)
    split = task.load()
    start = time.perf_counter()
    y_train = split.y_train
    if task.kind == "regression":
        y_mean, y_std = float(y_train.mean()), float(y_train.std())
        y_fit = (y_train - y_mean) / y_std
        loss = "mse"
    else:
        y_fit = split.y_train
        loss = "sparse_categorical_crossentropy"
    input_shape = split.x_train.shape[1:]
    model = task.build(tf_keras, input_shape)
    model.compile(optimizer=tf_keras.optimizers.Adam(task.learning_rate), loss=loss)

    class Progress(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress(f"  [{task.name}] epoch {epoch + 1}/{task.epochs} loss {logs['loss']:.4f}")

    model.fit(split.x_train, y_fit, epochs=task.epochs, batch_size=task.batch_size, shuffle=True,
              verbose=0, callbacks=[Progress()])
    if task.kind == "regression":
        # Fold the target scaling into the head, so the model speaks the target's units and
        # the device needs no extra rescale op.
        head = model.layers[-1]
        w, b = head.get_weights()
        head.set_weights([w * y_std, b * y_std + y_mean])
    # Batch 1 twin: the converter needs a static batch for the fused LSTM.
    deploy = task.build(tf_keras, input_shape, batch_size=1)
    deploy.set_weights(model.get_weights())
    tmp = temp_path_for(model_path)
    import warnings
    with warnings.catch_warnings():   # HDF5 on purpose: the format every later stage reads
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        deploy.save(tmp, save_format="h5")
    move_into_place(tmp, model_path)

    rng = np.random.RandomState(task.seed)
    pick = np.sort(rng.permutation(len(split.x_train))[:task.calib_pool])
    # Calibration windows in random order, so the first N are a fair sample of training.
    pick = rng.permutation(pick)
    write_npz(data_path, x_calib=split.x_train[pick], y_calib=_as_float(split.y_train[pick]),
              x_eval=split.x_test, y_eval=_as_float(split.y_test))
    return {"seconds": round(time.perf_counter() - start, 1), "train_windows": int(len(split.x_train)),
            "test_windows": int(len(split.x_test)), "epochs": task.epochs, "seed": task.seed,
            "preprocessing": split.preprocessing}


def _as_float(y):
    return np.asarray(y).astype(np.float32)
