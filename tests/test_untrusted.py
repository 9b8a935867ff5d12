"""Untrusted model and data files (issue 12, point 4): code planted in a model file never runs
unless the user passes --trust-model-code, and pickles in data files are never loaded. The
planted code writes a file: that file is the proof it ran."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from export.model_code import find_code

T, F = 8, 2
ROOT = Path(__file__).resolve().parent.parent
REFUSAL = ("layer 'planted' is a Lambda with Python code; loading it would run that code; "
           "pass --trust-model-code if you trust the file")


class _Planted:
    """Unpickling this opens (creates) a file: what a pickled array in a data file could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tf-keras model with a Lambda that writes `mark`, saved as .h5 and as a SavedModel,
    the same without the Lambda, a Keras 3 .keras with a planted lambda, and data."""
    from export.tfenv import seed_everything, tf_and_keras2
    import keras
    tf, K = tf_and_keras2()
    root = tmp_path_factory.mktemp("untrusted")
    mark = root / "planted_code_ran"
    planted = eval(f"lambda x: (open({str(mark)!r}, 'w').close(), x)[1]")   # marshalled into the file
    seed_everything(0)

    def model(*middle):
        return K.Sequential([K.layers.InputLayer(input_shape=(T, F), batch_size=1), *middle,
                             K.layers.LSTM(4), K.layers.Dense(1)])

    evil = model(K.layers.Lambda(planted, name="planted"))
    evil.save(root / "planted.h5")
    evil.save(root / "planted_sm", save_format="tf")
    model().save(root / "clean.h5")
    keras.Sequential([keras.Input((T, F)), keras.layers.Lambda(planted, name="planted"),
                      keras.layers.LSTM(4), keras.layers.Dense(1)]).save(root / "planted.keras")
    mark.unlink()   # building the models ran it here, before anything was saved
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=rng.standard_normal((40, T, F)).astype(np.float32),
             y=rng.standard_normal((40, 1)).astype(np.float32))
    return root, mark


def _one_line_refusal(capsys, rc, expected):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("edge: error: ") and expected in err[0], err[0]
    return err[0]


@pytest.mark.parametrize("name", ["planted.h5", "planted_sm", "planted.keras"])
def test_edge_lint_never_runs_planted_code(files, capsys, name):
    root, mark = files
    line = _one_line_refusal(capsys, main(["lint", str(root / name)]), REFUSAL)
    assert str(root / name) in line
    assert not mark.exists()


def test_edge_export_never_runs_planted_code_and_writes_nothing(files, capsys):
    root, mark = files
    art = root / "artifacts"
    rc = main(["export", "--model", str(root / "planted.h5"), "--data", str(root / "data.npz"),
               "--artifacts-dir", str(art)])
    _one_line_refusal(capsys, rc, REFUSAL)
    assert not mark.exists()
    written = [p for p in art.rglob("*") if p.is_file() and p.name != ".edge.lock"] if art.exists() else []
    assert written == []


@pytest.mark.parametrize("command", ["lint", "export"])
def test_a_subprocess_refuses_it_too(files, tmp_path, command):
    root, mark = files
    args = [str(root / "planted.h5")] if command == "lint" else [
        "--model", str(root / "planted.h5"), "--data", str(root / "data.npz"), "--artifacts-dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "edge.cli", command, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and REFUSAL in proc.stderr
    assert not mark.exists()


def test_with_trust_model_code_it_loads_as_before_and_exports(files, capsys):
    root, mark = files
    assert main(["lint", "--trust-model-code", str(root / "planted.h5")]) == 0
    assert mark.exists() and re.search(r"^planted +Lambda +native", capsys.readouterr().out, re.M)
    mark.unlink()
    art = root / "trusted"
    rc = main(["export", "--trust-model-code", "--model", str(root / "planted.h5"),
               "--data", str(root / "data.npz"), "--artifacts-dir", str(art)])
    assert rc == 0 and mark.exists()
    manifest = json.loads((art / "planted" / "manifest.json").read_text())
    ok = [a for a in manifest["artifacts"].values() if a["status"] == "ok"]
    assert len(ok) >= 7 and all(a["verified_with"] for a in ok)


def _rewrite_h5_config(src, dst, change):
    import h5py
    import shutil
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        change(config["config"]["layers"])
        f.attrs["model_config"] = json.dumps(config)
    return dst


@pytest.mark.parametrize("entry, expected", [
    ({"module": "os", "class_name": "function", "config": "system", "registered_name": None},
     "layer 'dense' names 'system' from the Python module 'os' (tf-keras imports it)"),
    ({"module": "builtins", "class_name": "function", "config": "exec", "registered_name": None},
     "layer 'dense' names the Python built-in 'exec'"),
], ids=["module", "builtin"])
def test_a_config_naming_python_functions_is_refused(files, tmp_path, capsys, entry, expected):
    """tf-keras's deserializer imports any module a config names and calls what it finds."""
    root, _ = files

    def plant(layers):
        dense = next(l for l in layers if l["class_name"] == "Dense")
        dense["config"]["name"] = "dense"
        dense["config"]["activation"] = entry

    path = _rewrite_h5_config(root / "clean.h5", tmp_path / "named.h5", plant)
    _one_line_refusal(capsys, main(["lint", str(path)]), expected + "; loading it would run that code")


def test_a_saved_model_whose_graph_writes_files_is_refused(tmp_path, capsys):
    from export.tfenv import tf_and_keras2
    tf, K = tf_and_keras2()
    target = tmp_path / "written_by_the_graph"

    class Writes(K.layers.Layer):
        def call(self, x):
            tf.io.write_file(str(target), tf.strings.as_string(tf.reduce_sum(x)))
            return x

    model = K.Sequential([K.layers.InputLayer(input_shape=(T, F), batch_size=1), Writes(name="w"),
                          K.layers.Dense(1)])
    model.save(tmp_path / "sm", save_format="tf")
    target.unlink(missing_ok=True)
    assert "its graph holds the op WriteFile" in " ".join(find_code(tmp_path / "sm"))
    _one_line_refusal(capsys, main(["lint", str(tmp_path / "sm")]), "WriteFile")
    assert not target.exists()


def test_tensorflow_functions_that_leave_the_graph_and_unreadable_configs_are_refused():
    from export.model_code import walk_config

    def op(fn):
        return {"class_name": "TFOpLambda", "config": {"name": f"tf.{fn}", "function": fn}}

    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        op("math.add"), op("compat.v1.shape"), op("compat.v1.io.write_file"), op("reshape")]}}
    assert walk_config(config) == ["layer 'tf.compat.v1.io.write_file' calls tf.compat.v1.io.write_file, "
                                   "which reaches outside the model"]
    deep = inner = {}
    for _ in range(5000):
        inner["config"] = inner = {}
    assert walk_config(deep) == ["the model config is nested too deeply to check"]


def test_clean_files_carry_no_code(files):
    root, _ = files
    assert find_code(root / "clean.h5") == []


def test_a_pickled_data_array_is_never_unpickled(files, tmp_path, capsys):
    root, _ = files
    mark = tmp_path / "unpickled"
    data = tmp_path / "pickled.npz"
    np.savez(data, x=np.array([_Planted(mark)], dtype=object))
    rc = main(["export", "--model", str(root / "clean.h5"), "--data", str(data),
               "--artifacts-dir", str(tmp_path / "art")])
    _one_line_refusal(capsys, rc, "'x' is an object array")
    assert not mark.exists()
    with np.load(data, allow_pickle=True) as z:   # the payload is real: unpickling runs it
        z["x"]
    assert mark.exists()


def test_no_np_load_allows_pickles():
    """allow_pickle=False is numpy's default: no call in the project turns it on."""
    offenders = [f"{p.relative_to(ROOT)}:{i}" for pkg in ("edge", "firmware_sim", "export", "groundfloor")
                 for p in sorted((ROOT / pkg).rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"allow_pickle\s*=\s*True", line) or re.search(r"pickle\.loads?\(", line)]
    assert offenders == []
