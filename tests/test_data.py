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
])
def test_bad_data_is_one_clear_line(tmp_path, arrays, expected):
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
