"""End-to-end on the real reference models: trained on real data, exported, run in their
runtimes. Uses artifacts/ (the same folder `make demo` fills), so after a demo it is cached."""
import json
from pathlib import Path

import numpy as np
import pytest

from edge.config import load_config
from export.inspect import summary
from export_helpers import litert_outputs
from groundfloor.ioquant import dequantize_output

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
MODELS = ["seattle_temp", "victoria_demand", "japanese_vowels"]


@pytest.fixture(scope="session")
def zoo():
    from edge.reference import export_reference
    from export.tfenv import WORKER_PRELOAD
    from groundfloor.isolate import shared_worker
    from groundfloor.locks import folder_lock
    cfg = load_config()
    out = {}
    with shared_worker(WORKER_PRELOAD):     # as `edge export` runs it, under its lock
        for name in MODELS:
            folder = ROOT / cfg.artifacts_dir / name
            with folder_lock(folder, "the reference-model tests", wait_message=lambda m: None):
                export_reference(cfg.models[name].task, folder, progress=lambda s: None)
            out[name] = folder
    return out


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _exported(zoo, model):
    """(folder, manifest, data.npz) of one exported reference model."""
    folder = zoo[model]
    return folder, _manifest(folder), np.load(folder / "data.npz")


def test_reference_models_learned_their_task(zoo):
    seattle = _manifest(zoo["seattle_temp"])["float_metric"]
    victoria = _manifest(zoo["victoria_demand"])["float_metric"]
    vowels = _manifest(zoo["japanese_vowels"])["float_metric"]
    d = np.load(zoo["seattle_temp"] / "data.npz")
    # Better than repeating the last observed hour (de-standardized from the data itself).
    prep = json.loads((zoo["seattle_temp"] / "train" / "training.json").read_text())["preprocessing"]
    last = d["x_eval"][:, -1, 0] * prep["standardize"]["std"][0] + prep["standardize"]["mean"][0]
    persistence = float(np.sqrt(np.mean((last - d["y_eval"][:, 0]) ** 2)))
    assert seattle["name"] == "rmse" and seattle["value"] < persistence
    assert victoria["name"] == "rmse" and victoria["value"] < 0.15  # GW; demand std is 0.88 GW
    assert vowels["name"] == "accuracy" and vowels["value"] > 0.9


@pytest.mark.parametrize("model", MODELS)
def test_every_artifact_built(zoo, model):
    m = _manifest(zoo[model])
    for name, a in m["artifacts"].items():
        assert a["status"] == "ok", (name, a["error"])
    assert m["source"]["rebuild_max_abs_diff"] <= 1e-5
    assert all(row["verdict"] in ("fused", "native") for row in m["source"]["lint"])


@pytest.mark.parametrize("model", MODELS)
def test_tflite_float_and_int8_against_keras(zoo, model):
    folder, m, d = _exported(zoo, model)
    x, y_float = d["x_eval"][:300], d["y_float"][:300]
    f = m["artifacts"]["tflite_float32"]
    y = litert_outputs(folder / f["file"], x, f)
    assert np.max(np.abs(y - y_float)) <= 1e-5

    q = m["artifacts"]["tflite_int8"]
    info = summary(folder / q["file"])
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in info["ops"] and info["weight_bytes_by_dtype"]["int8"] > 0
    assert "float32" not in info["weight_bytes_by_dtype"]
    y = dequantize_output(litert_outputs(folder / q["file"], x, q), q["io"]["outputs"][0])
    if m["task"] == "classification":
        # Class probabilities: the argmax must almost never move.
        assert np.mean(y.argmax(1) == y_float.argmax(1)) >= 0.98
    else:
        # Output rounding is +-0.5 LSB; input rounding and clipping (the test period leaves
        # the calibrated range) travel through 48 steps, and every stacked LSTM adds its own
        # int8 hidden state: a few LSB per LSTM layer at most, about one on average.
        layers = info["ops"].count("UNIDIRECTIONAL_SEQUENCE_LSTM")
        lsb = q["io"]["outputs"][0]["scale"]
        err = np.abs(y - y_float)
        assert err.max() <= 6 * layers * lsb, err.max() / lsb
        assert np.sqrt(np.mean(err ** 2)) <= 1.5 * layers * lsb


def test_weight_only_int8_really_holds_int8_weights(zoo):
    m = _manifest(zoo["seattle_temp"])
    a = m["artifacts"]["tflite_weight_int8"]
    info = summary(zoo["seattle_temp"] / a["file"])
    assert a["quantized"] and info["weight_bytes_by_dtype"]["int8"] > info["weight_bytes_by_dtype"]["float32"]
    assert info["io"]["inputs"][0]["dtype"] == "float32"  # weights only: activations stay float


@pytest.mark.parametrize("model", MODELS)
def test_streaming_equals_whole_sequence(zoo, model):
    folder, m, d = _exported(zoo, model)
    x = d["x_eval"][:40]
    sf, wf = m["artifacts"]["tflite_stream_float32"], m["artifacts"]["tflite_float32"]
    whole = litert_outputs(folder / wf["file"], x, wf)
    stepped = litert_outputs(folder / sf["file"], x, sf, stream=True)
    assert np.max(np.abs(stepped - whole)) <= 1e-5
    si, wi = m["artifacts"]["tflite_stream_int8"], m["artifacts"]["tflite_int8"]
    assert si["io"]["inputs"][0]["scale"] == wi["io"]["inputs"][0]["scale"]
    assert si["io"]["outputs"][0]["scale"] == wi["io"]["outputs"][0]["scale"]
    codes_whole = litert_outputs(folder / wi["file"], x, wi).astype(int)
    codes_step = litert_outputs(folder / si["file"], x, si, stream=True).astype(int)
    assert np.max(np.abs(codes_whole - codes_step)) <= 1  # stated bound: 1 output code


def test_second_export_is_a_cache_hit(zoo):
    from edge.reference import export_reference
    msgs = []
    m = export_reference("seattle_temp", zoo["seattle_temp"], progress=msgs.append)
    assert m["cache_hit"] and any("cache hit" in s for s in msgs)
