"""Streaming twins: export, agreement with whole-sequence inference (LiteRT, TFLite Micro,
onnxruntime), int8 I/O quantization shared with the whole model, long-stream drift, and the
clear refusal of Bidirectional models."""
import json
from pathlib import Path

import numpy as np
import pytest

from groundfloor.tflite_file import summary as tflite_summary
from groundfloor.fileio import sha256_file




def test_records_describe_streaming_artifacts(demo):
    d = Path(demo["dir"])
    recs = demo["records"]
    assert set(recs) == {"stream_float32.tflite", "stream_int8.tflite", "stream_float32.onnx",
                         "stream_dynamic_int8.onnx"}
    for name, rec in recs.items():
        assert rec["status"] == "ok", (name, rec["error"])
        assert rec["streaming"] is True and rec["file"] == name
        assert rec["bytes"] == (d / name).stat().st_size and rec["sha256"] == sha256_file(d / name)
        json.dumps(rec)  # manifest-ready
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in recs["stream_int8.tflite"]["ops"]
    assert recs["stream_int8.tflite"]["quantized"] and recs["stream_int8.tflite"]["options"]["route"] == "from_whole"
    assert "LSTM" in recs["stream_float32.onnx"]["ops"]
    assert "DynamicQuantizeLSTM" in recs["stream_dynamic_int8.onnx"]["ops"]
    names = [i["name"] for i in recs["stream_float32.onnx"]["io"]["inputs"]]
    assert names == ["x", "h0_0", "c0_0"]
    assert [o["name"] for o in recs["stream_float32.onnx"]["io"]["outputs"]] == ["y", "h_0", "c_0"]


def test_int8_stream_uses_whole_model_io_quantization(demo):
    d = Path(demo["dir"])
    s, w = tflite_summary(d / "stream_int8.tflite")["io"], tflite_summary(d / "model_int8.tflite")["io"]
    assert s["inputs"][0]["shape"] == [1, 1, 2] and w["inputs"][0]["shape"] == [1, 8, 2]
    for kind in ("inputs", "outputs"):
        assert s[kind][0]["dtype"] == "int8"
        assert (s[kind][0]["scale"], s[kind][0]["zero_point"]) == (w[kind][0]["scale"], w[kind][0]["zero_point"])


def test_stream_agrees_with_whole_sequence_everywhere(demo):
    from firmware_sim.stream_check import stream_agreement
    res = stream_agreement(demo["dir"], tflm=True)
    rows = {(r["runner"], r["stream"]): r for r in res["rows"]}
    # float: LiteRT, TFLite Micro and onnxruntime within 1e-5 of the whole-sequence output
    for key in [("litert", "stream_float32.tflite"), ("tflm", "stream_float32.tflite"),
                ("onnxruntime", "stream_float32.onnx")]:
        assert rows[key]["max_abs"] <= 1e-5, rows[key]
        assert rows[key]["vs_keras"]["max_abs"] <= 1e-5, rows[key]
    # int8: bit-exact against the whole int8 model in the same runtime
    assert rows[("litert", "stream_int8.tflite")]["max_lsb"] == 0
    assert rows[("tflm", "stream_int8.tflite")]["max_lsb"] <= 1
    # dynamic int8 ONNX: quantized weights, so only close to the float model
    assert rows[("onnxruntime", "stream_dynamic_int8.onnx")]["vs_keras"]["max_abs"] < 0.05
    assert res["ok"] is True
    json.dumps(res)


def test_long_stream_drift_reports_windows_and_cell_range(demo, tmp_path):
    from firmware_sim.stream_check import bench_long_stream
    d = Path(demo["dir"])
    t = np.arange(3000)
    signal = np.stack([np.sin(t / 37.0), np.cos(t / 91.0) * 1.5], axis=1).astype(np.float32)
    np.save(tmp_path / "signal.npy", signal)
    info = {"status": "ok", "name": "two sines", "rows": 3000, "passes": 1, "description": "what the app says"}
    out = bench_long_stream(d / "stream_float32.tflite", d / "stream_int8.tflite", tmp_path / "signal.npy",
                            signal_info=info, window=500, tflm=True)
    json.dumps(out)
    assert out["status"] == "ok" and out["signal"] == info and out["summary"]["steps"] == 3000
    res = out["result"]
    assert res["label"] == "two sines"
    assert res["steps"] == 3000 and len(res["per_window"]["litert_rmse"]) == 6
    assert len(res["per_window"]["tflm_rmse"]) == 6
    # the numpy cell (used for max |c|) reproduces the float model's hidden state
    assert res["numpy_vs_litert_float_h_max_abs"] < 1e-5
    assert res["int16_cell_range"][0] > 0 and res["float_max_abs_c"] > 0
    assert res["trend_litert"]["verdict"] in ("flat", "bounded", "grows")
    assert res["overall"]["tflm"]["vs_litert_int8_max_lsb"] <= 5
    assert res["overall"]["litert"]["rmse"] < 0.1


def test_bidirectional_model_cannot_stream(tmp_path):
    from fixtures_models import run_demo_model_child
    from export.streaming import NotStreamable, export_streaming
    r = run_demo_model_child(300, out_dir=str(tmp_path), bidirectional=True, units=4)
    assert r.ok, r.error
    with pytest.raises(NotStreamable, match="Bidirectional"):
        export_streaming(tmp_path / "source_tfkeras.h5", tmp_path, tmp_path / "data.npz")
    assert not list(tmp_path.glob("stream_*"))


def test_one_step_rewrite_of_whole_float_model_streams(demo, tmp_path):
    """The flatbuffer rewrite (time dimension -> 1) is generic: applied to the whole float
    model it gives a stream model equal to the converted streaming twin."""
    from groundfloor import runtime
    from export.streaming import one_step_from_whole
    d = Path(demo["dir"])
    info = one_step_from_whole(d / "model_float32.tflite", tmp_path / "rewritten.tflite")
    assert info == {"whole_steps": 8, "lstm_ops": 1}
    x = np.load(d / "data.npz")["x_eval"][:8]
    a = runtime.load(tmp_path / "rewritten.tflite").predict(x)
    b = runtime.load(d / "stream_float32.tflite").predict(x)
    np.testing.assert_allclose(a, b, atol=1e-6)
