"""Lint's verdicts against what `edge export` then does (issue 12, point 2).

Every probe case of export/lint_measured.py is saved to .h5, linted as a file (what `edge lint`
reads) and then exported with no artifacts selected, which is export's whole preparation (load,
lint, tf-keras batch-1 rebuild, the rebuild check) without conversions: export must refuse
exactly what the lint refuses, with one BadInput and nothing written, and rebuild the rest
within tolerance, unrolling exactly the layers the lint names. Converting all 20 cases would take
minutes, so the conversions run end to end on a representative subset: a masked LSTM, a Keras 3
LSTM with recurrent_activation="hard_sigmoid" (refused by export before issue 12) and a Keras 3
GRU; their graphs must hold the route the lint named and every artifact marked ok has run.
"""
import numpy as np
import pytest

from export import lint_probe, pipeline, verify_run
from export.lint import lint_file
from export.lint_measured import MEASURED
from groundfloor.errors import BadInput
from test_export import _run as run_artifact   # each window from a fresh state, in its runtime

CONVERTED = {"tflite_float32", "tflite_int8", "onnx_float32"}


def _data(path, shape, n=40):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((n, *shape)).astype(np.float32),
             y=rng.standard_normal((n, 1)).astype(np.float32))
    return path


def _rebuilt_unroll(folder):
    """{layer: unroll} of the recurrent layers in the tf-keras source export saved."""
    from export.tfenv import tf_and_keras2
    _, K = tf_and_keras2()
    model = K.models.load_model(folder / pipeline.SOURCE_FILE, compile=False)
    return {l.name: l.get_config()["unroll"] for l in model.layers if "unroll" in l.get_config()}


@pytest.mark.parametrize("case", sorted(MEASURED))
def test_export_takes_what_lint_accepts_and_refuses_what_it_refuses(case, tmp_path):
    model = lint_probe._build(case, False)
    path = tmp_path / f"{case}.h5"
    model.save(path)
    data = _data(tmp_path / "data.npz", tuple(int(d) for d in model.inputs[0].shape[1:]))
    report = lint_file(path)
    out = tmp_path / "out"
    try:
        manifest = pipeline.export_model(path, data, out, only=set(), progress=lambda s: None)
    except BadInput as e:
        assert not report.ok, (case, str(e))
        assert "\n" not in str(e) and not (out / pipeline.MANIFEST).exists()
        return
    assert report.ok, (case, [r.as_dict() for r in report.refused])
    source = manifest["source"]
    assert source["rebuild_max_abs_diff"] <= source["rebuild_tolerance"]
    assert source["unrolled_layers"] == report.needs_unroll
    unroll = _rebuilt_unroll(out)
    assert sorted(n for n, u in unroll.items() if u) == sorted(
        r.layer for r in report.rows if r.verdict == "unrolled" and r.layer in unroll), (case, unroll)


def _masked_lstm(path):
    from export.tfenv import seed_everything, tf_and_keras2
    _, K = tf_and_keras2()
    seed_everything(0)
    K.Sequential([K.layers.InputLayer(input_shape=(12, 2), batch_size=1), K.layers.Masking(0.0),
                  K.layers.LSTM(6, name="rnn"), K.layers.Dense(1)]).save(path)


def _keras3(rnn):
    def build(path):
        import keras
        keras.utils.set_random_seed(0)
        keras.Sequential([keras.Input((12, 2)), rnn(keras.layers), keras.layers.Dense(1)]).save(path)
    return build


E2E = {
    "masked_lstm.h5": _masked_lstm,
    "keras3_hard_sigmoid_lstm.keras": _keras3(lambda L: L.LSTM(6, recurrent_activation="hard_sigmoid", name="rnn")),
    "keras3_gru.keras": _keras3(lambda L: L.GRU(6, name="rnn")),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each E2E model linted as a file and exported (float32 and int8 TFLite, float32 ONNX)."""
    from export.tfenv import WORKER_PRELOAD
    from groundfloor.isolate import shared_worker
    out = {}
    with shared_worker(WORKER_PRELOAD):    # one worker for the three, as `edge export` runs several
        for name, build in E2E.items():
            root = tmp_path_factory.mktemp(name.split(".")[0])
            build(root / name)
            x = np.random.default_rng(0).standard_normal((40, 12, 2)).astype(np.float32)
            x[:, -3:] = 0.0   # padded steps: the mask has something to do
            np.savez(root / "data.npz", x=x, y=np.zeros((40, 1), np.float32))
            m = pipeline.export_model(root / name, root / "data.npz", root / "out", only=CONVERTED,
                                      progress=lambda s: None)
            out[name] = (lint_file(root / name), m, root / "out")
    return out


@pytest.mark.parametrize("name", sorted(E2E))
def test_the_lint_route_is_the_exported_route(exported, name):
    report, m, out = exported[name]
    assert report.ok and report.verdict_of("rnn") == "unrolled" and report.needs_unroll == ["rnn"]
    assert m["source"]["unrolled_layers"] == ["rnn"]
    assert m["source"]["rebuild_max_abs_diff"] <= 1e-5
    with np.load(out / pipeline.DATA_FILE) as d:
        x_eval, y_float = d["x_eval"][:8], d["y_float"][:8]
    assert set(m["artifacts"]) == CONVERTED
    for art_name, a in m["artifacts"].items():
        assert a["status"] == "ok", (art_name, a["error"])
        assert a["verified_with"] in (verify_run.LITERT, verify_run.LITERT_NO_DELEGATE,
                                      verify_run.ONNXRUNTIME), (art_name, a["verified_with"], a["notes"])
        if a["format"] == "tflite":   # unrolled: a flat graph, no fused op, no WHILE loop
            assert "WHILE" not in a["ops"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in a["ops"], art_name
            assert len(a["ops"]) > 50, art_name
        if "masked" in name and a["format"] == "tflite":
            assert "SELECT_V2" in a["ops"], art_name   # the mask is applied, as the lint says
        y = run_artifact(out / a["file"], x_eval, a).reshape(y_float.shape)   # LiteRT without XNNPACK
        tolerance = 1e-4 if a["mode"] == "float32" else 0.1 * (np.ptp(y_float) + 1e-3)
        assert np.max(np.abs(y - y_float)) <= tolerance, (art_name, np.max(np.abs(y - y_float)))


@pytest.mark.parametrize("name", sorted(E2E))
def test_edge_runtime_loads_what_export_ran(exported, name):
    """The on-device API runs every artifact export ran, also where XNNPACK crashes on the graph
    (the int8 Keras 3 GRU here: a double free, SIGABRT): its probe then retries without the
    default delegate, and the model loads that way."""
    from groundfloor import runtime
    _, m, out = exported[name]
    for art_name, a in m["artifacts"].items():
        model = runtime.load(out / a["file"])
        y = model.predict(np.zeros((1, 12, 2), np.float32))
        assert np.all(np.isfinite(y)), art_name
        if a["verified_with"] == verify_run.LITERT_NO_DELEGATE:
            assert model._backend.delegate.startswith("none"), art_name
