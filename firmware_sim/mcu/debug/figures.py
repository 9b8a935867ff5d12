"""The error figures of the drift report, all from groundfloor.metrics.error_metrics.

Its undefined value (None, for a non-finite figure) is the NaN the report has always carried."""
import numpy as np

from groundfloor.metrics import error_metrics


def _figure(v) -> float:
    return float("nan") if v is None else v


def rmse(a, b) -> float:
    """RMSE of a - b, broadcast against each other (the report has always compared targets of
    one column, e.g. class labels, with every output column)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    return _figure(error_metrics(a, b)["rmse"])


def error_rmse_max(value, reference) -> tuple[float, float]:
    """(rmse, max abs) of a quantized value against its float reference (same shape)."""
    m = error_metrics(reference, value)
    return _figure(m["rmse"]), _figure(m["max_abs"])


def drift(y_int8, y_float) -> tuple[float, float, float]:
    """(rmse, max abs, mean) of int8 - float outputs (the mean is positive when int8 reads high)."""
    m = error_metrics(y_int8, y_float)
    return _figure(m["rmse"]), _figure(m["max_abs"]), _figure(m["mean_err"])
