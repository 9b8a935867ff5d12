"""Corrupt and hostile files through the on-device API and the loaders: refused with one clear
line (naming the file), never a crash of the calling process, never silently run when the
export recorded the file's hash."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge import fuzz, fuzz_cli, runtime
from groundfloor import tflite_file
from groundfloor.errors import BadInput
from groundfloor.verify import verify_onnx, verify_tflite
from fixtures_models import tiny_artifacts, tiny_models  # noqa: F401


def test_short_campaign_no_crash_no_hang_every_known_hash_refused(tiny_artifacts):
    m = fuzz.run_models(tiny_artifacts.parent, n=60, seed=0, chunk=30, progress=lambda *_: None)
    assert m["crashes"] == 0 and m["hangs"] == 0 and m["escaped_errors"] == 0, m["crashers"]
    known = {k: v for k, v in m.items() if k.startswith("hash_known:")}
    assert sum(known.values()) == 60 and set(known) <= {"hash_known:refused_hash", "hash_known:refused"}
    assert sum(v for k, v in m.items() if k.startswith("no_hash:")) == 60


def test_bad_models_data_and_configs_through_edge_export_get_one_line_and_touch_nothing(demo):
    """The short version of `make fuzz`'s bad-input part: each kind through the command itself,
    beside an existing export whose files must stay byte-identical."""
    counts = fuzz_cli.run(Path(demo["dir"]), n=8, seed=0, progress=lambda *_: None)
    assert set(counts) == {"model", "data", "config"}
    for kind, per in counts.items():
        assert per.get("one_line_exit_2", 0) == 8, (kind, per)   # 8 bad ones, each refused cleanly
    assert fuzz_cli.bad_inputs_ok(counts), counts


def test_the_campaign_sees_a_changed_file_and_a_second_line(tmp_path):
    """The judge itself: an input that changed the existing export, or printed two lines, fails."""
    from groundfloor.isolate import IsolatedResult
    (tmp_path / "a.bin").write_bytes(b"x")
    before = fuzz_cli.snapshot(tmp_path)
    ok = IsolatedResult(ok=True, status="ok", value={"valid": False, "code": 2, "stderr": "edge: error: x\n"})
    assert fuzz_cli._outcome(ok, before, tmp_path) == "one_line_exit_2"
    two = IsolatedResult(ok=True, status="ok", value={"valid": False, "code": 2, "stderr": "a\nb\n"})
    assert fuzz_cli._outcome(two, before, tmp_path) == "several_lines_exit_2"
    (tmp_path / "a.bin").write_bytes(b"y")
    assert fuzz_cli._outcome(ok, before, tmp_path) == "changed_existing_files"
    assert not fuzz_cli.bad_inputs_ok({"data": {"changed_existing_files": 1}})


def _copy(src, tmp_path, with_manifest):
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    if with_manifest:
        shutil.copy(src.parent / "manifest.json", tmp_path / "manifest.json")
    return dst


def test_a_flipped_bit_is_refused_by_the_recorded_hash(tiny_artifacts, tmp_path):
    dst = _copy(tiny_artifacts / "model_int8.tflite", tmp_path, with_manifest=True)
    assert runtime.load(dst).predict(np.zeros((1, 8, 2), np.float32)).shape == (1, 1)   # intact: runs
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0x10
    dst.write_bytes(bytes(data))
    with pytest.raises(runtime.ModelRejected, match="sha256") as e:
        runtime.load(dst)
    assert str(dst) in str(e.value) and "\n" not in str(e.value)


def _rewritten(tiny_artifacts, tmp_path, change):
    model = tflite_file.read(tiny_artifacts / "model_int8.tflite")
    change(model, model.subgraphs[0])
    out = tmp_path / "bad.tflite"
    tflite_file.write(model, out)
    return out


def _fc(model, sg):
    return next(op for op in sg.operators if tflite_file.op_name(model, op) == "FULLY_CONNECTED")


@pytest.mark.parametrize("change, problem", [
    (lambda m, sg: setattr(_fc(m, sg), "inputs", np.array([0, 999, -1], np.int32)), "outside the"),
    (lambda m, sg: setattr(sg.tensors[_fc(m, sg).inputs[1]], "buffer", 10_000), "names buffer"),
    (lambda m, sg: setattr(m.buffers[sg.tensors[_fc(m, sg).inputs[1]].buffer], "data", np.zeros(3, np.uint8)),
     "bytes of data"),
    (lambda m, sg: setattr(m.buffers[sg.tensors[_fc(m, sg).inputs[1]].buffer], "data", None),
     "no input, earlier operator or constant data"),
    (lambda m, sg: setattr(m.operatorCodes[0], "builtinCode", 250), "does not know"),
    (lambda m, sg: setattr(sg.tensors[0], "shape", np.array([1, -5, 2], np.int32)), "negative dimension"),
    (lambda m, sg: setattr(sg, "outputs", np.array([77], np.int32)), "outputs"),
])
def test_verifier_names_what_is_wrong(tiny_artifacts, tmp_path, change, problem):
    bad = _rewritten(tiny_artifacts, tmp_path, change)
    with pytest.raises(BadInput, match=problem):
        verify_tflite(bad)
    with pytest.raises(runtime.ModelRejected, match=problem):
        runtime.load(bad)


CRASHER = Path(__file__).parent / "fixtures" / "litert_segfault_int8.tflite"


def test_the_probe_turns_a_runtime_crash_into_a_refusal(tmp_path, monkeypatch):
    """A mutated seattle_temp int8 model from the fuzz campaign (zeroed bytes cut an LSTM weight
    buffer) that kills LiteRT with SIGSEGV. The verifier refuses it; with that check switched
    off, the probe's child dies instead of the caller."""
    from groundfloor import verify
    with pytest.raises(runtime.ModelRejected, match="no input, earlier operator or constant data"):
        runtime.load(CRASHER)
    monkeypatch.setattr(verify, "_unfed_input", lambda model, sg: None)
    with pytest.raises(runtime.ModelRejected, match="crashed with SIGSEGV"):
        runtime.load(CRASHER)


def test_onnx_external_data_outside_the_folder_is_refused(tiny_artifacts, tmp_path):
    import onnx
    model = onnx.load(str(tiny_artifacts / "model_float32.onnx"))
    init = model.graph.initializer[0]
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    init.ClearField("raw_data")
    bad = tmp_path / "m.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(BadInput, match="points outside the directory|outside the model's folder"):
        verify_onnx(bad)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(BadInput, match="not a valid ONNX model"):
        verify_onnx(tmp_path / "junk.onnx")


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", ".hidden", "x" * 65, "-flag"])
def test_a_model_name_cannot_lead_outside_the_folders(tmp_path, name):
    from edge.config import load_config
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'[models."{name}"]\ntask = "seattle_temp"\n')
    with pytest.raises(BadInput, match="model name"):
        load_config(cfg)
    with pytest.raises(BadInput, match="model name"):
        load_config(None).model(name)


def test_an_h5_that_hangs_the_hdf5_reader_is_refused_not_waited_on(monkeypatch):
    """A mutated .h5 (a zeroed run in its attribute heap) on which h5py never returns from
    reading an attribute, found by `make fuzz`: the reader probe runs in a child, so the caller
    gets one line instead of a hung process."""
    import time
    from export import keras_bridge, model_probe
    monkeypatch.setattr(model_probe, "PROBE_TIMEOUT", 8.0)
    bad = Path(__file__).parent / "fixtures" / "h5_attribute_read_hangs.h5"
    start = time.perf_counter()
    with pytest.raises(BadInput, match="h5_attribute_read_hangs.h5") as e:
        keras_bridge.load_any(bad)
    assert time.perf_counter() - start < 60 and "\n" not in str(e.value)
