"""The int8 TFLite of a Bidirectional LSTM (export/lstm_int8_state.py): the converter gives each
fused LSTM's output the following CONCATENATION's quantization while its hidden-state tensor keeps
its own, so the kernel's codes are read at the wrong scale. The export rewrites that, refuses a
file where it is still so, and leaves every consistent (unidirectional) file byte-identical."""
from pathlib import Path

import numpy as np
import pytest
from fixtures_models import tiny_models  # noqa: F401

from export import lstm_int8_state, pipeline, verify_run
from export.lstm_int8_state import OUTPUT_STATE_INPUT, QuantMismatch
from groundfloor import runtime, seal, tflite_file, tflm
from groundfloor.ioquant import quantize_input
from groundfloor.isolate import run_isolated
from groundfloor.versions import tool_versions

STEPS, FEATURES, UNITS, N_CALIB, N_EVAL = 16, 2, 8, 100, 32
# Median |int8 - float| on the 32 evaluation windows (seed 0), measured after the rewrite /
# as the converter writes it: "last" 0.0017 / 0.047, "sequences" 0.0018 / 0.039; a tiny
# unidirectional LSTM(8) on the same windows gets 0.0032.
MEDIAN_DRIFT_BOUND = 0.01
TFLM_CODES = 3          # LiteRT vs TFLite Micro on the rewritten file: measured at most 2 codes
SEATTLE = Path(__file__).resolve().parents[1] / "artifacts" / "seattle_temp"


def _tiny_bilstm(kind):
    """"last": Bidirectional(LSTM) -> Dense (the mismatch is on the LSTMs); "sequences": the whole
    sequence, its last step cropped (torch's head(out[:, -1]) imports so; REVERSE_V2 too)."""
    from export.tfenv import seed_everything, tf_and_keras2
    _, K = tf_and_keras2()
    seed_everything(0)
    middle = {"last": [K.layers.Bidirectional(K.layers.LSTM(UNITS))],
              "sequences": [K.layers.Bidirectional(K.layers.LSTM(UNITS, return_sequences=True)),
                            K.layers.Cropping1D((STEPS - 1, 0)), K.layers.Flatten()]}[kind]
    return K.Sequential([K.layers.InputLayer(input_shape=(STEPS, FEATURES), batch_size=1), *middle,
                         K.layers.Dense(1)])


def _save_model_and_data(kind, root):
    """bi.h5 and data.npz in root; returns (the model, x_eval)."""
    model = _tiny_bilstm(kind)
    model.save(root / "bi.h5")
    x = np.random.default_rng(0).standard_normal((N_CALIB + N_EVAL, STEPS, FEATURES)).astype(np.float32)
    np.savez(root / "data.npz", x_calib=x[:N_CALIB], x_eval=x[N_CALIB:], y_eval=x[N_CALIB:, -1, :1])
    return model, x[N_CALIB:]


@pytest.fixture(scope="module", params=["last", "sequences"])
def bi(request, tmp_path_factory):
    """(x_eval, float outputs, the converter's own int8 file, that file rewritten)."""
    from export.tfenv import windows_outputs
    root = tmp_path_factory.mktemp(f"bi_int8_{request.param}")
    model, x_eval = _save_model_and_data(request.param, root)
    raw = root / "raw_int8.tflite"
    r = run_isolated("export.tflite:convert", {"model_path": str(root / "bi.h5"), "out_path": str(raw),
                                               "mode": "int8", "calib_path": str(root / "data.npz"),
                                               "align_lstm_state": False}, timeout=600)
    assert r.ok, r.error
    data, changes = lstm_int8_state.align_bytes(raw.read_bytes())
    assert changes, "the converter's bidirectional int8 file was expected to need the rewrite"
    fixed = root / "fixed_int8.tflite"
    seal.write_model(fixed, data)
    return x_eval, windows_outputs(model, x_eval).reshape(N_EVAL, -1), raw, fixed


def _median_drift(path, x, y_float):
    y = runtime.load(path, verify_hash=False).predict(x).reshape(len(x), -1)
    return float(np.median(np.abs(y - y_float)))


def test_rewritten_bidirectional_int8_is_as_close_as_a_unidirectional_one(bi):
    x, y_float, raw, fixed = bi
    assert _median_drift(fixed, x, y_float) < MEDIAN_DRIFT_BOUND
    assert _median_drift(raw, x, y_float) > MEDIAN_DRIFT_BOUND   # the bound catches the broken file
    model = tflite_file.read(fixed)
    assert lstm_int8_state.mismatches(model) == []
    assert tflite_file.op_names(model).count("QUANTIZE") >= 1    # the requantize into the concat


def test_tflite_micro_agrees_with_litert_on_the_rewritten_file(bi):
    x, _, _, fixed = bi
    litert = runtime.load(fixed, verify_hash=False).predict(x, raw=True).reshape(len(x), -1).astype(int)
    g = tflite_file.read(fixed).subgraphs[0]
    q = quantize_input(x, tflite_file.io_record(g.tensors[g.inputs[0]]))
    micro = tflm.run(fixed, q, timeout=300)["outputs"][0].reshape(len(x), -1).astype(int)
    assert np.abs(micro - litert).max() <= TFLM_CODES


def test_the_guard_refuses_the_converters_file_in_one_line(bi):
    _, _, raw, fixed = bi
    with pytest.raises(QuantMismatch) as e:
        verify_run.run_once(raw)          # what the export runs on every file it builds
    msg = str(e.value)
    assert "\n" not in msg and raw.name in msg and "UNIDIRECTIONAL_SEQUENCE_LSTM" in msg
    lstm_int8_state.check_file(fixed)     # the rewritten one passes


def test_the_guard_flags_a_planted_mismatch(bi, tmp_path):
    fixed = bi[3]
    model = tflite_file.read(fixed)
    g = model.subgraphs[0]
    lstm = next(op for op in g.operators if tflite_file.op_name(model, op) == lstm_int8_state.LSTM)
    g.tensors[lstm.inputs[OUTPUT_STATE_INPUT]].quantization.scale[0] *= 1.25
    planted = tmp_path / "planted.tflite"
    tflite_file.write(model, planted)
    with pytest.raises(QuantMismatch, match="output_state scale"):
        lstm_int8_state.check_file(planted)


def test_export_marks_a_mismatched_int8_file_failed(monkeypatch, tmp_path):
    """A converter change that ships the mismatch again: the artifact fails, its file is removed."""
    root = tmp_path / "in"
    root.mkdir()
    _save_model_and_data("last", root)
    monkeypatch.setitem(pipeline.ARTIFACTS, "unaligned_int8", pipeline.ArtifactSpec(
        "unaligned_int8.tflite", "tflite", "int8", "export.tflite:convert",
        {"mode": "int8", "align_lstm_state": False}, calib=True))
    m = pipeline.export_model(root / "bi.h5", root / "data.npz", tmp_path / "out",
                              only={"tflite_int8", "unaligned_int8"}, streaming=False, progress=lambda s: None)
    good, bad = m["artifacts"]["tflite_int8"], m["artifacts"]["unaligned_int8"]
    assert good["status"] == "ok" and good["options"]["lstm_state_aligned"], good
    assert "QUANTIZE" in good["ops"]
    assert bad["status"] == "failed" and bad["error"].startswith("QuantMismatch:"), bad
    assert "\n" not in bad["error"] and "hidden-state quantization differs" in bad["error"]
    assert not (tmp_path / "out" / "unaligned_int8.tflite").exists()


def test_the_rewrite_is_a_no_op_on_a_unidirectional_file(tiny_models):  # noqa: F811
    data = (tiny_models / "int8.tflite").read_bytes()     # the converter's own bytes
    assert lstm_int8_state.mismatches(tflite_file.read("int8.tflite", data=data)) == []
    assert lstm_int8_state.align_bytes(data) == (data, [])


@pytest.mark.skipif(not (SEATTLE / "model_int8.tflite").exists(), reason="reference artifacts not built")
def test_the_reference_int8_file_converts_byte_identical(tmp_path):
    import json
    from groundfloor.locks import folder_lock
    with folder_lock(SEATTLE, "a test reading it", wait_message=lambda m: None):  # not mid-export
        made_with = json.loads((SEATTLE / "manifest.json").read_text())["artifacts"]["tflite_int8"]["tool_versions"]
        if made_with != tool_versions():
            pytest.skip("the reference int8 file was made with other tool versions")
        out = tmp_path / "model_int8.tflite"
        r = run_isolated("export.tflite:convert", {"model_path": str(SEATTLE / "source_tfkeras.h5"),
                                                   "out_path": str(out), "mode": "int8",
                                                   "calib_path": str(SEATTLE / "data.npz"),
                                                   "calib_samples": pipeline.DEFAULT_CALIB_WINDOWS}, timeout=600)
        reference = (SEATTLE / "model_int8.tflite").read_bytes()
    assert r.ok, r.error
    assert out.read_bytes() == reference
