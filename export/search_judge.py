"""How the quantization search judges a candidate: the budget, the task metric and drift, the
validation split of the training side, and a candidate's figure on one window set.

The choice is made on validation windows split off data.npz's x_calib (the training side),
never on the evaluation windows, and never on a window any candidate calibrates on: the
calibration draw (export.ranges.calibration_set) sees only the rest of x_calib. Figures on
the evaluation windows are reported beside the validation ones; the choice never saw them.
"""
from dataclasses import dataclass

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.metrics import accuracy, class_labels, error_metrics

BUDGET_KEYS = {"max_rmse_increase": "regression", "max_accuracy_drop": "classification"}
# A change of the task metric this small is no change: a float32 artifact equals Keras up to
# rounding, so it must meet even a zero budget.
NO_CHANGE_TOLERANCE = 1e-6
# Without ground truth the change is drift / the float RMSE, which blows rounding up: a drift
# below this share of the float outputs' RMS is float32 rounding, no change.
FLOAT_ROUNDING = 1e-5
# The share of x_calib kept back to validate the choice, and the seed of that draw.
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 0


# ---------------------------------------------------------------- budget
def check_budget(task: str, budget: dict) -> tuple[str, float]:
    """The one budget key and its value; BadInput (one line) when it does not fit the task."""
    if task not in ("regression", "classification"):
        raise BadInput(None, f"task must be 'regression' or 'classification', not {task!r}")
    if not isinstance(budget, dict) or len(budget) != 1:
        raise BadInput(None, "give exactly one budget: max_rmse_increase (regression) or "
                             "max_accuracy_drop (classification)")
    (key, value), = budget.items()
    if key not in BUDGET_KEYS:
        raise BadInput(None, f"unknown budget {key!r}: use max_rmse_increase or max_accuracy_drop")
    if BUDGET_KEYS[key] != task:
        other = "max_rmse_increase" if task == "regression" else "max_accuracy_drop"
        raise BadInput(None, f"budget {key} applies to {BUDGET_KEYS[key]} models, but this model "
                             f"is a {task} model: use {other}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInput(None, f"budget {key} must be a number, not {value!r}") from None
    if not np.isfinite(value) or value < 0:
        raise BadInput(None, f"budget {key} must be a non-negative number, not {value}")
    if key == "max_accuracy_drop":
        value = value / 100.0  # points -> fraction
    return key, value


# ---------------------------------------------------------------- metrics
def task_metric(task, out, y_true) -> dict:
    """RMSE against the targets (regression) or accuracy against the labels (classification)."""
    out = np.asarray(out, np.float64)
    if task == "regression":
        y = np.asarray(y_true, np.float64).reshape(out.shape)
        return {"name": "rmse", "value": error_metrics(y, out)["rmse"]}
    return {"name": "accuracy", "value": accuracy(out.reshape(len(out), -1), y_true)}


def drift(task, out, y_float) -> dict:
    """rmse / max_abs against the float model's outputs; classifiers add argmax agreement."""
    out, ref = np.asarray(out, np.float64), np.asarray(y_float, np.float64).reshape(np.shape(out))
    m = error_metrics(ref, out)
    d = {"rmse": m["rmse"], "max_abs": m["max_abs"]}
    if task == "classification":
        d["agreement"] = accuracy(out.reshape(len(out), -1), class_labels(ref.reshape(len(ref), -1)))
    return d


def within_budget(task, key, value, float_value, metric_value) -> tuple[bool, float]:
    """(meets, change): change is the relative RMSE increase or the absolute accuracy drop."""
    if task == "regression":
        change = (metric_value - float_value) / float_value if float_value > 0 else metric_value - float_value
    else:
        change = float_value - metric_value
    return change <= value + NO_CHANGE_TOLERANCE, float(change)


# ---------------------------------------------------------------- the split
@dataclass(frozen=True)
class TrainingSplit:
    """Which x_calib rows validate the choice and which ones calibration may draw from."""
    validation: np.ndarray   # row indices into x_calib, sorted
    calibration: np.ndarray  # the other rows, sorted: the only calibration pool
    fraction: float
    seed: int

    def record(self) -> dict:
        return {"fraction": self.fraction, "seed": self.seed,
                "validation_indices": [int(i) for i in self.validation]}


def split_training_side(n: int, fraction: float = VALIDATION_FRACTION, seed: int = SPLIT_SEED) -> TrainingSplit:
    """A seeded draw of round(fraction * n) validation rows (at least one) out of n training
    windows; the rest is the calibration pool (at least one window). Same n, fraction and
    seed: the same split."""
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise BadInput(None, f"the validation fraction must be between 0 and 1, not {fraction}")
    if n < 2:
        raise BadInput(None, f"x_calib has {n} window(s): the search needs at least 2, one to "
                             f"calibrate and one to validate the choice")
    n_val = min(max(1, int(round(fraction * n))), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return TrainingSplit(np.sort(order[:n_val]), np.sort(order[n_val:]), fraction, int(seed))


# ---------------------------------------------------------------- one figure
@dataclass
class Judge:
    """Turns a candidate's outputs on one window set into its figure.

    With ground truth (`truth`), the figure is the task metric and its change against the
    float model's on the same windows. Without it, the figure is a bound from the drift
    against the float model: regression, change = drift RMSE / `scale` (the float model's
    RMSE elsewhere), which bounds the relative RMSE increase (triangle inequality), 0 for a
    drift at float32 rounding level;
    classification, change = 1 - argmax agreement, which bounds the accuracy drop.
    """
    task: str
    key: str
    limit: float
    y_float: np.ndarray           # the float model's outputs on these windows
    truth: object = None          # targets / labels on these windows, or None
    scale: float | None = None    # regression without truth: the float RMSE the drift is divided by

    @property
    def float_metric(self) -> dict | None:
        return None if self.truth is None else task_metric(self.task, self.y_float, self.truth)

    @property
    def basis(self) -> str:
        if self.truth is not None:
            return "task metric against ground truth, change against the float model on the same windows"
        if self.task == "regression":
            return ("no ground truth: change = drift RMSE vs the float model / the float model's evaluation "
                    "RMSE, an upper bound of the relative RMSE increase")
        return "no ground truth: change = 1 - argmax agreement with the float model, an upper bound of the accuracy drop"

    def figure(self, out) -> dict:
        """{"n", "metric", "change", "drift", "meets_budget"} of outputs `out` on these windows."""
        out = np.asarray(out, np.float64).reshape(self.y_float.shape)
        d = drift(self.task, out, self.y_float)
        if self.truth is not None:
            metric = task_metric(self.task, out, self.truth)
            meets, change = within_budget(self.task, self.key, self.limit, self.float_metric["value"],
                                          metric["value"])
        else:
            if self.task == "regression":
                metric = {"name": "drift_rmse", "value": d["rmse"]}
                rounding = d["rmse"] <= FLOAT_ROUNDING * float(np.sqrt(np.mean(self.y_float ** 2)))
                change = 0.0 if rounding else d["rmse"] / self.scale if self.scale else d["rmse"]
            else:
                metric = {"name": "agreement", "value": d["agreement"]}
                change = 1.0 - d["agreement"]
            change = float(change)
            meets = change <= self.limit + NO_CHANGE_TOLERANCE
        return {"n": int(len(out)), "metric": metric, "change": change, "drift": d, "meets_budget": bool(meets)}
