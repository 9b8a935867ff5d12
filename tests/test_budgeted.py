"""`edge quantize` (export/budgeted.py) on a tiny exported model: the search runs, its choice is
registered in the manifest as the artifact `budgeted`, search.json is written, and a second
call with the same model, data and budget is a cache hit."""
import json

import numpy as np
import pytest

from groundfloor.errors import BadInput
from groundfloor.fileio import sha256_file
from export import budgeted, pipeline, quantize_search
from tiny_keras import tiny_lstm

T, F, U = 8, 1, 8


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny tf-keras LSTM exported with only its float TFLite artifact (fast)."""
    root = tmp_path_factory.mktemp("budgeted")
    model = tiny_lstm(root / "tiny.h5", T, F, U)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (60, T, F)).astype(np.float32)
    y = model.predict(x, batch_size=1, verbose=0) + rng.normal(0, 0.01, (60, 1)).astype(np.float32)
    np.savez(root / "tiny.npz", x=x, y=y)
    out = root / "artifacts" / "tiny"
    m = pipeline.export_model(root / "tiny.h5", root / "tiny.npz", out, only={"tflite_float32"},
                              progress=lambda s: None)
    assert m["artifacts"]["tflite_float32"]["status"] == "ok"
    return out


_DEFAULT_CANDIDATES = quantize_search.default_candidates


def _candidates():
    """The cheapest and the last default candidate. The int8 one calibrates on all 48 training
    windows: on this toy model one random 40-window subset gave a broken int8 file (output
    RMSE 0.27, output std 0.19), the first 40 or all 48 windows an RMSE of 0.001-0.002."""
    specs = _DEFAULT_CANDIDATES()
    specs[0]["calib"]["n"] = 48
    return [specs[0], specs[-1]]


def test_quantize_registers_the_choice_and_caches_it(exported, monkeypatch):
    assert [c["kind"] for c in _candidates()] == ["tflite_int8", "tflite_float"]
    monkeypatch.setattr(quantize_search, "default_candidates", _candidates)
    budget = {"max_rmse_increase": 0.5}  # int8 meets it: the cheapest candidate is chosen
    said = []
    result = budgeted.quantize_model(exported, budget=budget, exhaustive=False, progress=said.append)
    assert result["met"] and result["chosen"]["name"] == "int8_default"
    assert [c["status"] for c in result["candidates"]] == ["ok", "skipped"]

    search_json = exported / budgeted.SEARCH_DIR / "search.json"
    saved = json.loads(search_json.read_text())
    assert saved["cache_key"] == result["cache_key"] and saved["chosen"]["name"] == "int8_default"
    manifest = json.loads((exported / pipeline.MANIFEST).read_text())
    art = manifest["artifacts"]["budgeted"]
    path = exported / art["file"]
    assert art["file"] == "quantize/int8_default.tflite" and art["status"] == "ok"
    assert art["format"] == "tflite" and art["mode"] == "tflite_int8" and art["quantized"] is True
    assert art["bytes"] == path.stat().st_size and art["sha256"] == sha256_file(path)
    assert art["io"]["inputs"][0]["dtype"] == "int8" and "UNIDIRECTIONAL_SEQUENCE_LSTM" in art["ops"]
    assert art["options"]["candidate"] == "int8_default" and art["options"]["budget"] == budget
    assert art["cache_key"] == result["cache_key"] and "accuracy-budgeted search" in art["notes"][0]
    assert manifest["artifacts"]["tflite_float32"]["status"] == "ok"  # the others stay

    # same model, data and budget: the search is not run again, the entry is registered again
    before = search_json.stat().st_mtime_ns
    said.clear()
    again = budgeted.quantize_model(exported, budget=budget, exhaustive=False, progress=said.append)
    assert any("cache hit" in s for s in said) and not any("converting" in s for s in said)
    assert search_json.stat().st_mtime_ns == before and again["cache_key"] == result["cache_key"]
    assert json.loads((exported / pipeline.MANIFEST).read_text())["artifacts"]["budgeted"] == art
    # the table `edge quantize` prints from the result
    table = quantize_search.format_table(quantize_search.SearchResult(
        **{k: again[k] for k in quantize_search.SearchResult.__dataclass_fields__}))
    assert "int8_default" in table and "<= chosen" in table and "budget met" in table


def test_quantize_refuses_bad_input_before_any_work(exported, tmp_path):
    with pytest.raises(BadInput, match="max_rmse_increase"):
        budgeted.quantize_model(exported, budget={"max_accuracy_drop": 0.5}, progress=lambda s: None)
    with pytest.raises(BadInput, match="run `edge export`"):
        budgeted.quantize_model(tmp_path, progress=lambda s: None)
