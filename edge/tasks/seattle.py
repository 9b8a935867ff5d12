"""Univariate forecasting: Seattle hourly temperature, 48 hours -> the next hour."""
import numpy as np

from edge.tasks.base import ReferenceTask, Split, standardize, windows


class SeattleTemp(ReferenceTask):
    name = "seattle_temp"
    kind = "regression"
    units = "degF"
    description = ("Seattle hourly temperature 2010 (vega-datasets, 8,759 h): 48 h -> next hour, "
                   "LSTM(32) -> Dense(1). Chronological split: the last 20% (late Oct - Dec, "
                   "colder than most of training) is the test set.")
    window = 48
    epochs = 15
    series_name = "seattle_temps"
    series_description = "vega_datasets seattle_temps: hourly Seattle temperatures 2010 (8,759 h)"

    def raw_series(self) -> np.ndarray:
        from vega_datasets import data
        return data.seattle_temps()["temp"].to_numpy(np.float64)[:, None]

    def load(self) -> Split:
        temp = self.raw_series().astype(np.float32)
        x, y, t = windows(temp, self.window, 0)
        cut = int(0.8 * len(temp))
        train, test = t < cut, t >= cut
        (x_train, x_test), prep = standardize(x[train], x[test])
        return Split(x_train, y[train], x_test, y[test],
                     {"features": ["temp_degF"], "standardize": prep, "window_steps": self.window})

    def layers(self, tf_keras):
        L = tf_keras.layers
        return [L.LSTM(32, name="lstm"), L.Dense(1, name="head")]
