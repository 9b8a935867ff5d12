"""The shared worker: one child process for many calls, a crash or a hang costing one call,
and a conversion through it byte-identical to one in a fresh process."""
import os

import pytest

from test_quant16x8 import tiny16  # noqa: F401  (builds model.h5 and data.npz once)

from groundfloor.isolate import run_isolated, shared_worker


def test_calls_share_one_process():
    with shared_worker() as w:
        pids = {run_isolated("os:getpid").value for _ in range(3)}
        assert len(pids) == 1 and w.started == 1
    assert pids != {os.getpid()}
    assert run_isolated("os:getpid").value not in pids     # outside the block: a fresh child


def test_a_crash_costs_one_call_and_the_next_call_runs():
    with shared_worker() as w:
        first = run_isolated("os:getpid").value
        r = run_isolated("os:abort")
        assert not r.ok and r.status == "crashed" and "SIGABRT" in r.error
        after = run_isolated("os:getpid")
        assert after.ok and after.value != first and w.started == 2


def test_a_hang_is_killed_and_errors_stay_one_line():
    with shared_worker() as w:
        r = run_isolated("subprocess:call", {"args": ["sleep", "30"]}, timeout=1.0)
        assert r.status == "timeout" and r.seconds < 10
        e = run_isolated("json:loads", {"s": "{"})
        assert e.status == "error" and e.error.startswith("JSONDecodeError") and w.started == 2
        assert run_isolated("json:loads", {"s": "[1]"}).value == [1]


def test_env_asks_for_a_fresh_process():
    with shared_worker():
        shared = run_isolated("os:getpid").value
        assert run_isolated("os:getpid", env={"X_EDGE_TEST": "1"}).value != shared


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_conversion_in_the_worker_is_byte_identical(tmp_path, tiny16, mode):
    """Conversions one after the other in one worker equal the same conversion in a fresh
    process: Keras name counters are reset between calls, and an int8 calibration retires its
    worker (the calibrator's leftovers changed the next int8 file's bytes)."""
    kw = lambda out: {"model_path": str(tiny16 / "model.h5"), "out_path": str(out), "mode": mode,
                      "calib_path": str(tiny16 / "data.npz"), "calib_samples": 32}
    fresh = run_isolated("export.tflite:convert", kw(tmp_path / "fresh.tflite"), timeout=300)
    assert fresh.ok, fresh.error
    with shared_worker() as w:
        for name in ("a.tflite", "b.tflite", "c.tflite"):
            r = run_isolated("export.tflite:convert", kw(tmp_path / name), timeout=300)
            assert r.ok, r.error
        assert w.started == (1 if mode == "float32" else 3)
    ref = (tmp_path / "fresh.tflite").read_bytes()
    assert all((tmp_path / n).read_bytes() == ref for n in ("a.tflite", "b.tflite", "c.tflite"))



def test_onnx_conversion_in_the_worker_is_byte_identical(tmp_path, tiny16):
    """tf2onnx numbers the nodes it inserts with a process-wide counter: the names are renumbered."""
    kw = lambda out: {"model_path": str(tiny16 / "model.h5"), "out_path": str(out)}
    assert run_isolated("export.onnx_export:to_onnx", kw(tmp_path / "fresh.onnx"), timeout=300).ok
    with shared_worker():
        for name in ("a.onnx", "b.onnx"):
            r = run_isolated("export.onnx_export:to_onnx", kw(tmp_path / name), timeout=300)
            assert r.ok, r.error
    ref = (tmp_path / "fresh.onnx").read_bytes()
    assert (tmp_path / "a.onnx").read_bytes() == ref == (tmp_path / "b.onnx").read_bytes()
