"""Calibration and evaluation data: .npz or CSV, checked against the model's input.

.npz: either `x_calib`, `x_eval` (and optional `y_eval`, `y_calib`), or one `x` (and
optional `y`) that is split chronologically: the first 80% is the calibration pool (the
training side), the last 20% the evaluation set. `x` has shape [N, T, F].
CSV: one time series, one row per time step, a header row; every numeric column except
`y` is a feature, in the model's feature order. Windows of the model's T steps slide by
one row; an optional `y` column gives the target at each window's last row.
"""
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput

CALIB_FRACTION = 0.8


def load_data(path, input_shape) -> dict:
    """Returns x_calib, x_eval (float32 [N, T, F]) and y_eval / y_calib when known."""
    path = Path(path)
    if not path.exists():
        raise BadInput(path, "data file not found")
    if path.suffix == ".npz":
        arrays = _load_npz(path)
    elif path.suffix == ".csv":
        arrays = _load_csv(path, input_shape)
    else:
        raise BadInput(path, f"unsupported data format '{path.suffix}' (use .npz or .csv)")
    return _check(path, arrays, input_shape)


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:
        raise BadInput(path, f"not a readable .npz file ({type(e).__name__})")
    if "x_calib" in data and "x_eval" in data:
        return {k: data[k] for k in ("x_calib", "x_eval", "y_eval", "y_calib") if k in data}
    if "x" not in data:
        raise BadInput(path, f"needs an array 'x' (or 'x_calib' and 'x_eval'); found {sorted(data) or 'none'}")
    x, y = data["x"], data.get("y")
    if y is not None and len(y) != len(x):
        raise BadInput(path, f"'y' has {len(y)} rows but 'x' has {len(x)}")
    return _split(x, y)


def _split(x, y):
    """Chronological split: the first CALIB_FRACTION calibrates, the rest evaluates."""
    cut = int(round(CALIB_FRACTION * len(x)))
    out = {"x_calib": x[:cut], "x_eval": x[cut:]}
    if y is not None:
        out.update(y_calib=y[:cut], y_eval=y[cut:])
    return out


def _load_csv(path, input_shape):
    import csv
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(path, f"cannot read CSV ({type(e).__name__})")
    if len(rows) < 2:
        raise BadInput(path, "empty dataset: no data rows")
    header = [h.strip() for h in rows[0]]
    try:
        table = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as e:
        raise BadInput(path, f"non-numeric value in CSV ({e})")
    y_col = header.index("y") if "y" in header else None
    features = table[:, [i for i in range(len(header)) if i != y_col]]
    steps = input_shape[0]
    if len(features) < steps:
        raise BadInput(path, f"only {len(features)} rows; the model needs windows of {steps} steps")
    x = np.stack([features[i:i + steps] for i in range(len(features) - steps + 1)])
    return _split(x, table[steps - 1:, y_col] if y_col is not None else None)


def _check(path, arrays, input_shape):
    expected = tuple(int(d) for d in input_shape)
    for key in ("x_calib", "x_eval"):
        x = arrays[key]
        if x.size == 0 or len(x) == 0:
            raise BadInput(path, f"empty dataset: '{key}' has no samples")
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise BadInput(path, f"'{key}' has shape {list(x.shape)} but the model expects "
                                 f"[N, {expected[0]}, {expected[1]}]")
        if not np.issubdtype(x.dtype, np.number):
            raise BadInput(path, f"'{key}' is not numeric (dtype {x.dtype})")
    for key, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            bad = int(np.sum(~np.isfinite(a)))
            raise BadInput(path, f"'{key}' contains {bad} NaN or inf values")
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
