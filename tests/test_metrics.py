"""Reference metrics against values worked out by hand on small arrays."""
import math

import numpy as np
import pytest

from groundfloor.metrics import accuracy, class_labels, error_metrics, evaluate, per_step_drift


def test_error_metrics_by_hand():
    r = np.array([1.0, 2.0, 3.0, 4.0])
    d = np.array([1.0, 2.0, 3.0, 5.0])
    m = error_metrics(r, d)
    # e = r - d = [0, 0, 0, -1]
    assert m["n"] == 4
    assert m["rmse"] == pytest.approx(0.5)                       # sqrt(1/4)
    assert m["mae"] == pytest.approx(0.25)
    assert m["max_abs"] == pytest.approx(1.0)
    assert m["l2r"] == pytest.approx(1 / math.sqrt(30))          # ||e|| / ||r||, ||r||^2 = 30
    assert m["mean_err"] == pytest.approx(-0.25)
    assert m["std_err"] == pytest.approx(math.sqrt(0.1875))     # (3 * 0.25^2 + 0.75^2) / 4
    assert m["nse"] == pytest.approx(0.8)                        # 1 - 1 / 5, sum((r - 2.5)^2) = 5
    assert m["cos"] == pytest.approx(34 / math.sqrt(30 * 39))    # r.d = 34, ||d||^2 = 39


def test_identical_outputs_are_perfect():
    r = np.array([[0.5], [-1.0], [2.0]])
    m = error_metrics(r, r.copy())
    assert m["rmse"] == 0 and m["max_abs"] == 0 and m["nse"] == 1 and m["cos"] == pytest.approx(1)


def test_undefined_values_are_none():
    m = error_metrics(np.zeros(3), np.ones(3))
    assert m["l2r"] is None and m["nse"] is None and m["cos"] is None
    assert m["rmse"] == pytest.approx(1.0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        error_metrics(np.zeros(3), np.zeros(4))


def test_classifier_metrics_by_hand():
    y_float = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])   # argmax 0 1 0 1
    deployed = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.1, 0.9]])  # argmax 0 1 1 1
    labels = np.array([0, 1, 1, 0])
    out = evaluate(deployed, y_float=y_float, y_true=labels, task="classification")
    assert out["cross"]["argmax_agreement"] == pytest.approx(0.75)
    assert out["truth"]["acc"] == pytest.approx(0.75)      # 0 1 1 1 vs 0 1 1 0: 3 of 4
    assert out["truth"]["acc_float"] == pytest.approx(0.5)  # 0 1 0 1 vs 0 1 1 0: 2 of 4
    assert out["truth"]["acc_change"] == pytest.approx(0.25)
    # one-hot labels and sigmoid outputs
    assert accuracy(deployed, np.eye(2)[labels]) == pytest.approx(0.75)
    assert list(class_labels(np.array([[0.2], [0.7]]))) == [0, 1]


def test_per_step_drift_by_hand():
    r = np.zeros((2, 3, 1))
    d = np.zeros((2, 3, 1))
    d[0, 1, 0] = 2.0
    d[1, 2, 0] = -1.0
    drift = per_step_drift(r, d)
    assert drift["max_abs"] == [0.0, 2.0, 1.0]
    assert drift["rmse"] == pytest.approx([0.0, math.sqrt(2.0), math.sqrt(0.5)])
    assert per_step_drift(r[:, 0], d[:, 0]) is None   # not a sequence output
    out = evaluate(d, y_float=r, y_true=r)
    assert out["cross"]["per_step"]["max_abs"] == [0.0, 2.0, 1.0]
    assert out["truth"]["per_step"]["max_abs"] == [0.0, 2.0, 1.0]


def test_evaluate_regression_cross_and_truth():
    y_float = np.array([[1.0], [2.0]])
    y_true = np.array([[1.0], [3.0]])
    d = np.array([[1.5], [2.0]])
    out = evaluate(d, y_float=y_float, y_true=y_true)
    assert out["cross"]["max_abs"] == pytest.approx(0.5)
    assert out["truth"]["max_abs"] == pytest.approx(1.0)
    assert out["truth"]["rmse"] == pytest.approx(math.sqrt((0.25 + 1) / 2))
    assert "truth" not in evaluate(d, y_float=y_float)
