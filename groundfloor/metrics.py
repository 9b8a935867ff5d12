"""Reference metrics for deployed outputs, as vendor validation tools report them.

For reference outputs r and deployed outputs d (flattened), error e = r - d:
  rmse = sqrt(mean(e^2)), mae = mean(|e|), max_abs = max(|e|),
  l2r = ||e|| / ||r||, mean_err = mean(e), std_err = std(e) (population),
  nse = 1 - sum(e^2) / sum((r - mean(r))^2)  (Nash-Sutcliffe efficiency),
  cos = r.d / (||r|| ||d||).
Classifiers add: acc (argmax of d against the labels), argmax_agreement (argmax of d against
argmax of r) and, against ground truth, acc_change = acc(deployed) - acc(float reference).
Sequence outputs [N, T, ...] add per-time-step drift (rmse and max_abs for each t).

`evaluate(...)` gives both views: "cross" (against the float model's outputs, the drift)
and "truth" (against ground truth). An undefined value (a zero norm or zero variance) is None.
"""
from __future__ import annotations

import math

import numpy as np


def _f(v):
    v = float(v)
    return v if math.isfinite(v) else None


def error_metrics(reference, deployed) -> dict:
    r = np.asarray(reference, dtype=np.float64).ravel()
    d = np.asarray(deployed, dtype=np.float64).ravel()
    if r.shape != d.shape:
        raise ValueError(f"shape mismatch: reference {np.shape(reference)} vs deployed {np.shape(deployed)}")
    if r.size == 0:
        return {"n": 0}
    e = r - d
    norm_r, norm_d = np.linalg.norm(r), np.linalg.norm(d)
    var_r = float(np.sum((r - r.mean()) ** 2))
    return {
        "n": int(r.size),
        "rmse": _f(np.sqrt(np.mean(e ** 2))),
        "mae": _f(np.mean(np.abs(e))),
        "max_abs": _f(np.max(np.abs(e))),
        "l2r": _f(np.linalg.norm(e) / norm_r) if norm_r > 0 else None,
        "mean_err": _f(np.mean(e)),
        "std_err": _f(np.std(e)),
        "nse": _f(1.0 - np.sum(e ** 2) / var_r) if var_r > 0 else None,
        "cos": _f(np.dot(r, d) / (norm_r * norm_d)) if norm_r > 0 and norm_d > 0 else None,
    }


def class_labels(y) -> np.ndarray:
    """Labels from scores or one-hot [N, C] (argmax of the last axis), or from one column of
    integer labels / sigmoid probabilities [N] or [N, 1] (rounded: 0.5 is the threshold)."""
    y = np.asarray(y)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1)
    if y.ndim >= 2:
        y = y[..., 0]
    return np.rint(y).astype(np.int64)


def accuracy(scores, labels) -> float | None:
    pred = class_labels(scores)
    lab = class_labels(labels)
    if pred.size == 0 or pred.shape != lab.shape:
        return None
    return _f(np.mean(pred == lab))


def per_step_drift(reference, deployed) -> dict | None:
    """For sequence outputs [N, T, ...]: rmse and max_abs of r - d at each time step."""
    r = np.asarray(reference, dtype=np.float64)
    d = np.asarray(deployed, dtype=np.float64)
    if r.ndim < 3 or r.shape != d.shape or r.shape[1] < 2:
        return None
    e = (r - d).reshape(r.shape[0], r.shape[1], -1)
    return {"rmse": [_f(v) for v in np.sqrt(np.mean(e ** 2, axis=(0, 2)))],
            "max_abs": [_f(v) for v in np.max(np.abs(e), axis=(0, 2))]}


def evaluate(deployed, y_float=None, y_true=None, task: str = "regression") -> dict:
    """Metrics of `deployed` outputs: "cross" against y_float, "truth" against y_true."""
    out: dict = {}
    deployed = np.asarray(deployed)
    if y_float is not None:
        y_float = np.asarray(y_float)
        cross = error_metrics(y_float, deployed.reshape(y_float.shape))
        if task == "classification":
            cross["argmax_agreement"] = accuracy(deployed.reshape(y_float.shape), class_labels(y_float))
        out["cross"] = _with_per_step(cross, y_float, deployed)
    if y_true is not None:
        y_true = np.asarray(y_true)
        if task == "classification":
            truth = {"n": int(y_true.shape[0]), "acc": accuracy(deployed, y_true)}
            if y_float is not None:
                acc_ref = accuracy(y_float, y_true)
                truth["acc_float"] = acc_ref
                truth["acc_change"] = (_f(truth["acc"] - acc_ref)
                                       if truth["acc"] is not None and acc_ref is not None else None)
        else:
            truth = error_metrics(y_true, deployed.reshape(y_true.shape))
            if y_float is not None:
                # The float model on the same windows: runners that see a subset (the
                # emulator) are compared like for like.
                truth["rmse_float"] = error_metrics(y_true, y_float.reshape(y_true.shape))["rmse"]
            truth = _with_per_step(truth, y_true, deployed)
        out["truth"] = truth
    return out


def _with_per_step(metrics: dict, reference, deployed) -> dict:
    """The metrics with their per-step drift against `reference` last ("per_step"), when the
    outputs have time steps."""
    drift = per_step_drift(reference, deployed.reshape(reference.shape))
    if drift is not None:
        metrics["per_step"] = drift
    return metrics
