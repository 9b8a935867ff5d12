import numpy as np
import pytest

from groundfloor.errors import BadInput
from export.data import load_data


def _npz(tmp_path, **arrays):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return p


def test_npz_x_y_is_split_chronologically(tmp_path):
    x = np.arange(10 * 4 * 2, dtype=np.float32).reshape(10, 4, 2)
    d = load_data(_npz(tmp_path, x=x, y=np.arange(10)), (4, 2))
    assert len(d["x_calib"]) == 8 and len(d["x_eval"]) == 2
    assert np.array_equal(d["x_eval"], x[8:]) and np.array_equal(d["y_eval"], [8, 9])


def test_csv_windows_slide_by_one_row(tmp_path):
    p = tmp_path / "d.csv"
    rows = ["a,b,y"] + [f"{i},{10 * i},{100 * i}" for i in range(12)]
    p.write_text("\n".join(rows))
    d = load_data(p, (3, 2))
    x = np.concatenate([d["x_calib"], d["x_eval"]])
    y = np.concatenate([d["y_calib"], d["y_eval"]])
    assert x.shape == (10, 3, 2)
    assert np.array_equal(x[0], [[0, 0], [1, 10], [2, 20]]) and y[0] == 200  # target at the last row


@pytest.mark.parametrize("arrays,expected", [
    (dict(x=np.zeros((10, 5, 2))), "shape"),
    (dict(x=np.full((10, 4, 2), np.nan)), "NaN or inf"),
    (dict(x=np.full((10, 4, 2), np.inf)), "NaN or inf"),
    (dict(x=np.zeros((0, 4, 2))), "empty"),
    (dict(z=np.zeros((10, 4, 2))), "needs an array 'x'"),
    (dict(x=np.zeros(10)), "'x' has shape [10]: it must be [N, T, F]"),
    (dict(x=np.zeros((10, 4, 2, 1))), "'x' has shape [10, 4, 2, 1]"),
    (dict(x=np.array(3.0)), "'x' has shape []"),
    (dict(x=np.array([np.zeros((4, 2))] * 10, dtype=object)), "'x' is an object array"),
    (dict(x=np.zeros((10, 4, 2), complex)), "not numeric (dtype complex128)"),
    (dict(x=np.zeros((10, 4, 2)), y=np.zeros(3)), "'y' has 3 rows but 'x' has 10"),
    (dict(x=np.zeros((10, 4, 2)), y=np.array(1.0)), "'y' has no rows (a scalar)"),
    (dict(x=np.zeros((10, 4, 2)), y=np.array(["a"] * 10)), "'y_eval' is not numeric"),
    (dict(x_calib=np.zeros((8, 4, 2)), x_eval=np.zeros((5, 4, 2)), y_eval=np.zeros(3)),
     "'y_eval' has 3 rows but 'x_eval' has 5"),
    (dict(x_calib=np.zeros((8, 4, 2)), x_eval=np.zeros((5, 4, 2)), y_eval=np.zeros(5), y_calib=np.zeros(2)),
     "'y_calib' has 2 rows but 'x_calib' has 8"),
])
def test_bad_or_malformed_npz_is_one_clear_line(tmp_path, arrays, expected):
    with pytest.raises(BadInput) as e:
        load_data(_npz(tmp_path, **arrays), (4, 2))
    assert expected in str(e.value) and "d.npz" in str(e.value) and "\n" not in str(e.value)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BadInput, match="not a readable"):
        load_data(bad, (4, 2))
    with pytest.raises(BadInput, match="not found"):
        load_data(tmp_path / "missing.npz", (4, 2))


@pytest.mark.parametrize("lines,expected", [
    (["a,b,y"] + [f"{i},{i}" for i in range(8)], "line 2 has 2 value(s) but the header has 3 column(s) (a, b, y)"),
    (["a,b,y", "1,2,3", "4,5,6", "7,8", "1,2,3"], "line 4 has 2 value(s) but the header has 3"),
    (["a,b", "1,2", "3,4,5", "6,7"], "line 3 has 3 value(s) but the header has 2"),
    (["a,b,y", "1,2,3", "", "4,x,6", "7,8,9"], "line 4, column 'b': non-numeric value 'x'"),  # blank lines count
    (["a,b,y", "1,,3", "4,5,6"], "line 2, column 'b': non-numeric value ''"),
    (["a,b,y"], "empty dataset"),
])
def test_malformed_csv_names_the_line(tmp_path, lines, expected):
    p = tmp_path / "bad.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput) as e:
        load_data(p, (2, 2))
    assert str(e.value).startswith(f"{p}: ") and expected in str(e.value)
    assert "\n" not in str(e.value)


def test_valid_inputs_keep_their_values(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 4, 2))
    d = load_data(_npz(tmp_path, x_calib=x[:6], x_eval=x[6:], y_eval=np.arange(4) > 1, y_calib=np.arange(6)), (4, 2))
    assert d["x_calib"].dtype == np.float32 and np.allclose(d["x_eval"], x[6:])
    assert d["y_eval"].tolist() == [0, 0, 1, 1] and d["y_calib"].tolist() == list(range(6))


@pytest.mark.parametrize("kind", ["npz_2d", "csv_text"])
def test_a_bad_data_file_is_refused_before_the_model_is_read(tmp_path, kind):
    """The data's own checks run first: the error names the data file although the model file
    is no model at all (reading it would start TensorFlow, seconds for nothing)."""
    from export.pipeline import export_model
    model = tmp_path / "m.h5"
    model.write_bytes(b"not a model")
    if kind == "npz_2d":
        bad, said = _npz(tmp_path, x=np.zeros((10, 3), np.float32)), "must be [N, T, F]"
    else:
        bad, said = tmp_path / "d.csv", "line 3, column 'a': non-numeric value 'x'"
        bad.write_text("a,y\n1,2\nx,3\n")
    with pytest.raises(BadInput) as e:
        export_model(model, bad, tmp_path / "out", progress=lambda s: None)
    assert str(bad) in str(e.value) and said in str(e.value) and not (tmp_path / "out").exists()
