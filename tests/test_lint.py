"""Tests for export/lint.py (`edge lint`).

The fast tests build tiny models (no conversion) and check each verdict; the slow one
converts a "fused" and an "unrolled" model in child processes so the verdicts stay tied
to what the converter really does (export/lint_probe.py has the full measurement).
"""
import json
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

tf = pytest.importorskip("tensorflow")
k = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from groundfloor.errors import BadInput  # noqa: E402
from export import lint_rules  # noqa: E402
from export.lint import lint_file, lint_model  # noqa: E402
from export_helpers import model_file  # noqa: E402

T, F = 16, 3
L = k.layers


def seq(*layers, batch=1, shape=(T, F)):
    return k.Sequential([L.InputLayer(input_shape=shape, batch_size=batch), *layers])


def verdicts(report):
    return [(r.cls, r.verdict) for r in report.rows]


class Swish(L.Layer):
    def call(self, x):
        return x * tf.math.sigmoid(x)


class Igamma(L.Layer):
    def call(self, x):
        return tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 0.5)


# --------------------------------------------------------------------- verdicts, tf-keras
@pytest.mark.parametrize("build, expected", [
    (lambda: seq(L.LSTM(8), L.Dense(1)), [("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, return_sequences=True), L.LSTM(8), L.Dense(1)),
     [("LSTM", "fused"), ("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(L.Bidirectional(L.LSTM(8)), L.Dense(1)),
     [("Bidirectional", "fused"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, go_backwards=True), L.Dense(1)), [("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, dropout=0.2), L.Dense(1)), [("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, recurrent_dropout=0.2), L.Dense(1)), [("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(L.GRU(8), L.Dense(1)), [("GRU", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.SimpleRNN(8), L.Dense(1)), [("SimpleRNN", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.RNN(L.LSTMCell(8)), L.Dense(1)), [("RNN", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, activation="relu"), L.Dense(1)), [("LSTM", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, recurrent_activation="hard_sigmoid"), L.Dense(1)),
     [("LSTM", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, use_bias=False), L.Dense(1)), [("LSTM", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.Bidirectional(L.GRU(8)), L.Dense(1)), [("Bidirectional", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.Masking(0.0), L.LSTM(8), L.Dense(1)),
     [("Masking", "native"), ("LSTM", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.Masking(0.0), L.GRU(8), L.Dense(1)),
     [("Masking", "native"), ("GRU", "unrolled"), ("Dense", "native")]),
    (lambda: seq(L.LSTM(8, stateful=True), L.Dense(1)), [("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(L.Conv1D(4, 3, padding="same"), L.LSTM(8), L.Dense(1)),
     [("Conv1D", "native"), ("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(L.Reshape((T, F)), L.Dense(4), L.LSTM(8, return_sequences=True), L.Dropout(0.1),
                 L.Flatten(), L.Dense(1)),
     [("Reshape", "native"), ("Dense", "native"), ("LSTM", "fused"), ("Dropout", "native"),
      ("Flatten", "native"), ("Dense", "native")]),
    (lambda: seq(Swish(), L.LSTM(8), L.Dense(1)),
     [("Swish", "native"), ("LSTM", "fused"), ("Dense", "native")]),
    (lambda: seq(Igamma(), L.LSTM(8), L.Dense(1)),
     [("Igamma", "refused"), ("LSTM", "fused"), ("Dense", "native")]),
], ids=["lstm", "stacked", "bidirectional", "go_backwards", "dropout", "recurrent_dropout", "gru",
        "simple_rnn", "rnn_lstmcell", "relu", "hard_sigmoid", "no_bias", "bidi_gru", "masking",
        "masking_gru", "stateful", "conv1d", "around", "custom_ok", "custom_unknown_op"])
def test_verdicts_tf_keras(build, expected):
    report = lint_model(build())
    assert verdicts(report) == expected
    assert report.framework == "tf_keras"
    assert report.ok == all(v != "refused" for _, v in expected)
    assert report.needs_unroll == [r.layer for r in report.rows if r.verdict == "unrolled"]
    for r in report.rows:
        assert r.reason and "\n" not in r.reason


def test_return_state_functional():
    inp = k.Input(shape=(T, F), batch_size=1)
    out, h, c = L.LSTM(8, return_state=True, name="enc")(inp)
    model = k.Model(inp, [L.Dense(1)(out), h, c])
    report = lint_model(model)
    assert report.verdict_of("enc") == "unrolled"
    assert "return_state" in report.rows[0].reason
    assert report.needs_unroll == ["enc"]
    # export takes one output: h and c as outputs too refuse the model as a whole
    assert not report.ok and report.refused[0].layer == "(model)" and "3 output(s)" in report.refused[0].reason
    model = k.Model(inp, L.Dense(1)(h))   # the state used inside the model: one output
    assert lint_model(model).ok


def test_time_major_is_refused_export_feeds_batch_major_windows():
    """The converter fuses it (lint_measured.py), but export pins batch 1 on axis 0 and feeds
    [N, T, F] windows: its rebuild check refuses the model, so the lint does too."""
    model = seq(L.LSTM(8, time_major=True, name="tm"), L.Dense(1), batch=T, shape=(1, F))
    report = lint_model(model)
    assert report.verdict_of("tm") == "refused"
    assert "time_major=False" in report.rows[0].reason
    model = seq(L.Bidirectional(L.LSTM(8, time_major=True), name="bi"), L.Dense(1), batch=T, shape=(1, F))
    assert lint_model(model).verdict_of("bi") == "refused"


def test_unroll_reasons_warn_about_cost_and_overrides():
    report = lint_model(seq(L.GRU(8, name="g"), L.Dense(1)))
    row = report.rows[0]
    assert row.verdict == "unrolled"
    assert "500-1000 ops" in row.reason and "KB" in row.reason
    assert report.needs_unroll == ["g"]
    assert report.overrides["g"] == {"unroll": True}


def test_fused_overrides_for_training_only_settings():
    model = seq(L.LSTM(8, recurrent_dropout=0.2, name="a"), L.Dense(1))
    report = lint_model(model)
    assert report.overrides["a"] == {"recurrent_dropout": 0.0}
    model = seq(L.LSTM(8, unroll=True, name="b"), L.Dense(1))
    report = lint_model(model)
    assert report.verdict_of("b") == "fused"
    assert report.overrides["b"] == {"unroll": False}


def test_stateful_becomes_stateless_fused():
    report = lint_model(seq(L.LSTM(8, stateful=True, name="s"), L.Dense(1)))
    assert report.overrides["s"] == {"stateful": False}
    assert "invoke()" in report.rows[0].reason
    # no fused GRU: keep it stateful, unrolled (state in resource variables)
    report = lint_model(seq(L.GRU(8, stateful=True, name="g"), L.Dense(1)))
    assert report.overrides["g"] == {"unroll": True}
    assert "reset_states()" in report.rows[0].reason


def test_mask_stops_at_layer_that_drops_it():
    # Conv1D does not support masking: the mask never reaches the LSTM.
    model = seq(L.Masking(0.0), L.Conv1D(4, 3, padding="same"), L.LSTM(8, name="l"), L.Dense(1))
    assert lint_model(model).verdict_of("l") == "fused"
    # Dense passes the mask on, and so does an LSTM with return_sequences.
    model = seq(L.Masking(0.0), L.Dense(4), L.LSTM(8, return_sequences=True, name="a"),
                L.LSTM(8, name="b"), L.Dense(1))
    rep = lint_model(model)
    assert rep.verdict_of("a") == "unrolled" and rep.verdict_of("b") == "unrolled"
    assert "mask" in rep.rows[2].reason and "TFLite Micro" in rep.rows[2].reason
    assert rep.needs_unroll == ["a", "b"]


def test_embedding_mask_zero_refuses_downstream_rnn():
    model = k.Sequential([L.InputLayer(input_shape=(T,), batch_size=1, dtype="int32"),
                          L.Embedding(10, 4, mask_zero=True), L.LSTM(8, name="l"), L.Dense(1)])
    assert lint_model(model).verdict_of("l") == "unrolled"
    model = k.Sequential([L.InputLayer(input_shape=(T,), batch_size=1, dtype="int32"),
                          L.Embedding(10, 4), L.LSTM(8, name="l"), L.Dense(1)])
    assert lint_model(model).verdict_of("l") == "fused"


def test_registry_is_a_dict_and_drives_verdicts(monkeypatch):
    assert isinstance(lint_rules.RULES, dict) and "LSTM" in lint_rules.RULES
    monkeypatch.setitem(lint_rules.RULES, "Dense", lambda info: lint_rules.Finding("refused", "test rule"))
    report = lint_model(seq(L.LSTM(8), L.Dense(1)))
    assert report.rows[1].verdict == "refused" and not report.ok


# --------------------------------------------------------------------- Keras 3
def test_keras3_model():
    K = keras.layers
    model = keras.Sequential([keras.Input(shape=(T, F), batch_size=1), K.LSTM(8, name="l"),
                              K.Dense(4), K.Dense(1)])
    report = lint_model(model)
    assert report.framework == "keras3"
    assert report.verdict_of("l") == "fused"
    assert any("Keras 3" in n for n in report.notes)
    model = keras.Sequential([keras.Input(shape=(T, F), batch_size=1), K.Masking(0.0),
                              K.Bidirectional(K.LSTM(8, return_sequences=True), name="bi"),
                              K.GRU(8, name="g"), K.Dense(1)])
    report = lint_model(model)
    assert report.verdict_of("bi") == "unrolled" and "mask" in report.rows[1].reason
    assert report.verdict_of("g") == "unrolled"
    assert report.ok
    model = keras.Sequential([keras.Input(shape=(T, F), batch_size=1),
                              K.Bidirectional(K.LSTM(8), name="bi"), K.Dense(1)])
    assert lint_model(model).verdict_of("bi") == "fused"
    model = keras.Sequential([keras.Input(shape=(T, F), batch_size=1),
                              K.GRU(8, name="g"), K.Dense(1)])
    assert lint_model(model).needs_unroll == ["g"]


def test_keras3_activations_are_linted_as_the_rebuild_reproduces_them():
    """Keras 3 hard_sigmoid (relu6(x + 3) / 6) is rebuilt exactly where weights feed it, so an
    LSTM's recurrent_activation converts (unrolled); where nothing can rescale it, or tf-keras
    lacks the activation, the layer is refused before export tries."""
    K = keras.layers

    def lint(*layers):
        return lint_model(keras.Sequential([keras.Input(shape=(T, F), batch_size=1), *layers]))

    rep = lint(K.LSTM(8, recurrent_activation="hard_sigmoid", name="l"), K.Dense(1, activation="hard_sigmoid"))
    assert rep.ok and rep.verdict_of("l") == "unrolled"
    rep = lint(K.Bidirectional(K.LSTM(8, activation="hard_sigmoid"), name="bi"), K.Dense(1))
    assert rep.verdict_of("bi") == "refused" and "relu6(x + 3) / 6" in rep.rows[0].reason
    rep = lint(K.LSTM(8, name="l"), K.Dense(1, activation="hard_swish", name="d"))
    assert rep.verdict_of("d") == "refused" and "tf-keras does not have" in rep.rows[1].reason
    # the same activations in a tf-keras model are tf-keras's own: nothing to rebuild
    assert lint_model(seq(L.LSTM(8, activation="hard_sigmoid"), L.Dense(1))).ok


# --------------------------------------------------------------------- report output
def test_format_table_and_json():
    report = lint_model(seq(Igamma(name="ig"), L.Masking(0.0, name="mk"), L.LSTM(8, name="my_lstm"),
                            L.Dense(1, name="out")))
    table = report.format_table()
    lines = table.splitlines()
    assert lines[0].split() == ["layer", "class", "verdict", "reason"]
    assert any(line.startswith("my_lstm") and "unrolled" in line for line in lines)
    assert any(line.startswith("ig ") and "refused" in line for line in lines)
    assert "REFUSED" in table
    # fixed width: the verdict column starts at the same offset on every row line
    col = lines[0].index("verdict")
    starts = [next(line for line in lines[2:] if line.startswith(r.layer + " ")) for r in report.rows]
    assert [line[col:].split()[0] for line in starts] == [r.verdict for r in report.rows]
    assert all(len(line) <= 100 for line in lines if not line.startswith("note"))
    data = report.to_json()
    assert json.loads(json.dumps(data)) == data
    assert {d["layer"]: d["verdict"] for d in data} == {
        "ig": "refused", "mk": "native", "my_lstm": "unrolled", "out": "native"}
    assert set(data[0]) == {"layer", "class", "verdict", "reason"}


# --------------------------------------------------------------------- lint_file
def test_lint_file_formats(tmp_path):
    m2 = seq(L.LSTM(8, name="l"), L.Dense(1))
    h5 = tmp_path / "m.h5"
    m2.save(h5)
    rep = lint_file(h5)
    assert rep.framework == "tf_keras" and rep.verdict_of("l") == "fused"

    K = keras.layers
    m3 = keras.Sequential([keras.Input(shape=(T, F), batch_size=1), K.GRU(8, name="g"), K.Dense(1)])
    kf = tmp_path / "m.keras"
    m3.save(kf)
    rep = lint_file(kf)
    assert rep.framework == "keras3" and rep.needs_unroll == ["g"]

    sm = tmp_path / "sm"
    m2.save(sm, save_format="tf")
    assert lint_file(sm).verdict_of("l") == "fused"


def test_lint_file_unimportable_custom_layer(tmp_path):
    K = keras.layers

    @keras.saving.register_keras_serializable(package="lint_test_tmp")
    class Twice(K.Layer):
        def call(self, x):
            return x * 2.0

    model = keras.Sequential([keras.Input(shape=(T, F), batch_size=1), Twice(name="tw"),
                              K.LSTM(8, name="l"), K.Dense(1)])
    path = tmp_path / "c.keras"
    model.save(path)
    keras.saving.get_custom_objects().pop("lint_test_tmp>Twice", None)
    rep = lint_file(path)
    assert rep.framework == "config"
    assert rep.verdict_of("tw") == "refused" and rep.verdict_of("l") == "fused"


@pytest.mark.parametrize("name, content, problem", [
    ("missing.h5", None, "not found"),
    ("empty.keras", b"", "empty"),
    ("junk.h5", b"this is not hdf5" * 10, "cannot load"),
    ("junk.keras", b"PK\x03\x04 broken zip", "cannot load"),
    ("model.bin", b"x", "unsupported"),
    ("model.pt", b"x", "not a PyTorch zip archive"),   # .pt is TorchScript now (issue 14)
])
def test_lint_file_bad_input(tmp_path, name, content, problem):
    with pytest.raises(BadInput) as e:
        lint_file(model_file(tmp_path, name, content))
    assert e.value.path == str(tmp_path / name)
    assert problem in e.value.problem
    assert "\n" not in e.value.problem


def test_lint_file_dir_not_savedmodel(tmp_path):
    with pytest.raises(BadInput, match="SavedModel"):
        lint_file(tmp_path)


# --------------------------------------------------------------------- tied to the converter
def test_verdicts_match_real_conversion():
    """Lint the plain models, rebuild them as the report says (overrides), convert to full
    int8 in one child process: "fused" must give the fused op; "unrolled" must convert with
    no WHILE loop (a WHILE graph would segfault int8 calibration) and stay close to Keras."""
    from groundfloor.isolate import run_isolated
    cases = ["lstm", "stateful", "recurrent_dropout", "gru", "masking"]
    res = run_isolated("export.lint_probe:lint_and_convert", {"names": cases, "mode": "int8"},
                       timeout=170)
    assert res.ok, res.error + "\n" + res.stderr_tail
    out = res.value
    for name in ("lstm", "stateful", "recurrent_dropout"):
        v = out[name]
        assert list(v["verdicts"].values()) == ["fused", "native"], name
        assert v["needs_unroll"] == []
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in v["ops"] and "WHILE" not in v["ops"], name
        assert v["max_abs_diff"] < 0.05, (name, v["max_abs_diff"])
    assert out["stateful"]["overrides"] != {} and out["recurrent_dropout"]["overrides"] != {}
    for name in ("gru", "masking"):
        v = out[name]
        assert "unrolled" in v["verdicts"].values(), name
        assert v["needs_unroll"], name
        assert "WHILE" not in v["ops"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in v["ops"], name
        assert v["n_ops"] > 10 * out["lstm"]["n_ops"], name
        assert v["max_abs_diff"] < 0.02, (name, v["max_abs_diff"])
    # the mask really is applied: ignoring it would be off by ~0.05 on this input
    assert "SELECT_V2" in out["masking"]["ops"]


# The probe cases the lint rebuilds into another measured form before conversion: stateful
# LSTMs are rebuilt stateless, recurrent_dropout (training only) becomes 0, i.e. the plain LSTM.
_MEASURED_AS_REBUILT = {"stateful": ("stateful", "rebuilt_stateless"), "recurrent_dropout": ("lstm", "float32")}
_RNN_CLASSES = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional"}
# Probe cases the converter handles but `edge export` cannot feed (lint_measured.py): refused.
_EXPORT_CANNOT_FEED = {"time_major"}


def test_verdicts_agree_with_the_measured_table():
    """Every probe model's recurrent layers get the route export/lint_measured.py records for
    it: fused where the converter fused it (float32 and int8), unrolled where it made a WHILE
    loop and the unrolled graph converted; a layer whose ops failed to convert is refused."""
    from export import lint_probe
    from export.lint_measured import MEASURED
    builders = lint_probe._builders()
    assert set(MEASURED) == set(builders)
    for name, (build, _) in builders.items():
        report = lint_model(build(False))
        case, key = _MEASURED_AS_REBUILT.get(name, (name, "float32"))
        route = MEASURED[case][key]
        rnn = [r.verdict for r in report.rows if r.cls in _RNN_CLASSES]
        if name in _EXPORT_CANNOT_FEED:
            assert route.startswith("fused") and rnn == ["refused"], (name, rnn)
        elif route.startswith("error"):
            assert report.refused and not report.ok, name
        elif route.startswith("fused"):
            assert rnn and set(rnn) == {"fused"}, (name, rnn)
            assert key != "float32" or MEASURED[case]["int8"].startswith("fused"), name
        else:
            assert route.startswith("WHILE") and MEASURED[name]["unroll_float32"].startswith("flat"), name
            assert rnn and set(rnn) == {"unrolled"}, (name, rnn)
