"""Calibration and evaluation data: .npz or CSV, checked against the model's input.

.npz: either `x_calib`, `x_eval` (and optional `y_eval`, `y_calib`), or one `x` (and
optional `y`) that is split chronologically: the first 80% is the calibration pool (the
training side), the last 20% the evaluation set. `x` has shape [N, T, F].
CSV: one time series, one row per time step, a header row; every numeric column except
`y` is a feature, in the model's feature order. Windows of the model's T steps slide by
one row; an optional `y` column gives the target at each window's last row.
Anything malformed (a ragged or non-numeric CSV row, a wrong shape or dtype, y rows that do
not match x) is a BadInput of one line naming the file, and the line for a CSV.
"""
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput

CALIB_FRACTION = 0.8


def load_data(path, input_shape) -> dict:
    """Returns x_calib, x_eval (float32 [N, T, F]) and y_eval / y_calib when known."""
    path = _existing(path)
    arrays = _load_npz(path) if path.suffix == ".npz" else _load_csv(path, input_shape)
    return _check(path, arrays, input_shape)


def precheck(path) -> None:
    """Every check that needs no model (format, readable, numeric, [N, T, F], not empty): run
    before the model loads, a bad data file is refused in a second instead of after TensorFlow
    has started and the model has been read."""
    path = _existing(path)
    if path.suffix == ".npz":
        _check(path, _load_npz(path), None)
    else:
        _csv_table(path, *_csv_rows(path))


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise BadInput(path, "data file not found")
    if path.suffix not in (".npz", ".csv"):
        raise BadInput(path, f"unsupported data format '{path.suffix}' (use .npz or .csv)")
    return path


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {}
            for k in z.files:
                try:
                    data[k] = z[k]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    raise BadInput(path, f"'{k}' is an object array: save numeric arrays") from None
    except BadInput:
        raise
    except Exception as e:
        raise BadInput(path, f"not a readable .npz file ({type(e).__name__})")
    if "x_calib" in data and "x_eval" in data:
        return {k: data[k] for k in ("x_calib", "x_eval", "y_eval", "y_calib") if k in data}
    if "x" not in data:
        raise BadInput(path, f"needs an array 'x' (or 'x_calib' and 'x_eval'); found {sorted(data) or 'none'}")
    x, y = data["x"], data.get("y")
    if x.ndim != 3:
        raise BadInput(path, f"'x' has shape {list(x.shape)}: it must be [N, T, F]")
    if y is not None and (y.ndim == 0 or len(y) != len(x)):
        raise BadInput(path, f"'y' has {_rows(y)} but 'x' has {len(x)}")
    return _split(x, y)


def _rows(a) -> str:
    return "no rows (a scalar)" if np.ndim(a) == 0 else f"{len(a)} rows"


def _split(x, y):
    """Chronological split: the first CALIB_FRACTION calibrates, the rest evaluates."""
    cut = int(round(CALIB_FRACTION * len(x)))
    out = {"x_calib": x[:cut], "x_eval": x[cut:]}
    if y is not None:
        out.update(y_calib=y[:cut], y_eval=y[cut:])
    return out


def _csv_rows(path):
    """(header, [(line number, row)]) of a CSV file, blank lines skipped."""
    import csv
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInput(path, f"cannot read CSV ({type(e).__name__}: {e})")
    if len(rows) < 2:
        raise BadInput(path, "empty dataset: no data rows")
    return [h.strip() for h in rows[0][1]], rows[1:]


def _csv_table(path, header, rows):
    """The data rows as a float table; BadInput naming the line of a ragged or non-numeric row."""
    table = np.empty((len(rows), len(header)), np.float64)
    for i, (line, r) in enumerate(rows):
        if len(r) != len(header):
            raise BadInput(path, f"line {line} has {len(r)} value(s) but the header has {len(header)} "
                                 f"column(s) ({', '.join(header)})")
        for j, v in enumerate(r):
            try:
                table[i, j] = float(v)
            except ValueError:
                raise BadInput(path, f"line {line}, column '{header[j]}': non-numeric value {v.strip()!r}") from None
    return table


def _load_csv(path, input_shape):
    header, rows = _csv_rows(path)
    table = _csv_table(path, header, rows)
    y_col = header.index("y") if "y" in header else None
    features = table[:, [i for i in range(len(header)) if i != y_col]]
    steps = input_shape[0]
    if len(features) < steps:
        raise BadInput(path, f"only {len(features)} rows; the model needs windows of {steps} steps")
    x = np.stack([features[i:i + steps] for i in range(len(features) - steps + 1)])
    return _split(x, table[steps - 1:, y_col] if y_col is not None else None)


def _numeric(a, allow_bool=False) -> bool:
    """Real numbers (integers or floats; booleans only where asked), never complex."""
    kind = np.asarray(a).dtype.kind
    return kind in "iuf" or (allow_bool and kind == "b")


def _check(path, arrays, input_shape):
    """input_shape None: the model is not known yet (precheck), only [N, T, F] is asked for."""
    expected = tuple(int(d) for d in input_shape) if input_shape is not None else None
    for key in ("x_calib", "x_eval"):
        x = arrays[key]
        if x.size == 0 or len(x) == 0:
            raise BadInput(path, f"empty dataset: '{key}' has no samples")
        if expected is None and x.ndim != 3:
            raise BadInput(path, f"'{key}' has shape {list(x.shape)}: it must be [N, T, F]")
        if expected is not None and (x.ndim != 3 or tuple(x.shape[1:]) != expected):
            raise BadInput(path, f"'{key}' has shape {list(x.shape)} but the model expects "
                                 f"[N, {expected[0]}, {expected[1]}]")
        if not _numeric(x):
            raise BadInput(path, f"'{key}' is not numeric (dtype {x.dtype})")
    for key, of in (("y_eval", "x_eval"), ("y_calib", "x_calib")):
        if key not in arrays:
            continue
        y = arrays[key]
        if not _numeric(y, allow_bool=True):
            raise BadInput(path, f"'{key}' is not numeric (dtype {y.dtype})")
        if y.ndim == 0 or len(y) != len(arrays[of]):
            raise BadInput(path, f"'{key}' has {_rows(y)} but '{of}' has {len(arrays[of])}")
    for key, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            bad = int(np.sum(~np.isfinite(a)))
            raise BadInput(path, f"'{key}' contains {bad} NaN or inf values")
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
