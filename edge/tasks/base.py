"""What every reference task provides (data, layers, and for a continuous series its raw series,
which the bench's long stream replays: edge.tasks.long_stream), and the shared training recipe."""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict = field(default_factory=dict)  # how raw sensor values become x


class ReferenceTask(ABC):
    name = ""
    kind = "regression"          # or "classification"
    units = None                 # units of the regression target, for reports
    description = ""
    seed = 1234
    epochs = 10
    batch_size = 64
    learning_rate = 3e-3
    calib_pool = 1000            # training windows kept for calibration (x_calib)
    series_name = None           # a task whose data is one continuous series: its name, and
    series_description = ""      # what it is (the bench's long stream replays it, raw_series)

    @abstractmethod
    def load(self) -> Split:
        """The data, split into training and test windows."""

    @abstractmethod
    def layers(self, tf_keras):
        """The layers after the input, as a list (a Sequential stack)."""

    def build(self, tf_keras, input_shape, batch_size=None):
        inp = tf_keras.Input(shape=input_shape, batch_size=batch_size, name="input")
        x = inp
        for layer in self.layers(tf_keras):
            x = layer(x)
        return tf_keras.Model(inp, x, name=self.name)

    @property
    def metric(self):
        return "accuracy" if self.kind == "classification" else "rmse"

    def raw_series(self) -> np.ndarray:
        """The continuous series [S, F] in its own units (float64). Tasks of independent sequences
        (series_name None) have none; the long stream checks series_name before asking."""
        raise ValueError(f"{self.name}: the data is independent sequences, not one continuous series")

    def long_stream_signal(self, artifacts_dir, **kw) -> dict:
        """What the bench's long stream replays for this task's exported model (edge.tasks.long_stream)."""
        from edge.tasks.long_stream import long_stream_signal
        return long_stream_signal(self, artifacts_dir, **kw)


def standardize(train, *others):
    """Per-feature mean/std from the training split only; applied to every split."""
    mean = train.reshape(-1, train.shape[-1]).mean(axis=0)
    std = train.reshape(-1, train.shape[-1]).std(axis=0) + 1e-8
    out = [((a - mean) / std).astype(np.float32) for a in (train, *others)]
    return out, {"mean": mean.tolist(), "std": std.tolist()}


def windows(series: np.ndarray, length: int, target_col: int | None, stride: int = 1):
    """Sliding windows of `length` steps; the target is the next step's `target_col`."""
    idx = np.arange(0, len(series) - length, stride)
    x = np.stack([series[i:i + length] for i in idx]).astype(np.float32)
    y = series[idx + length, target_col].astype(np.float32)[:, None] if target_col is not None else None
    return x, y, idx + length
