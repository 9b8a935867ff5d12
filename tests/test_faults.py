"""kill -9 during export, quantize and bench (the short version of `make faults`): no file is
half-written or disagrees with what describes it, and every rerun completes."""
import json

from edge import faults


def test_kills_leave_nothing_inconsistent(tmp_path):
    result = faults.campaign(tmp_path / "work", kills=3, seed=0, progress=lambda *_: None, short=True)
    assert result["inconsistent"] == []
    assert result["kills"] + result["finished_before_kill"] == 3 and result["kills"] >= 1
    assert all(r["rc"] in (0, 1) for runs in result["reruns"].values() for r in runs)
    built = json.loads((tmp_path / "work" / "artifacts" / "faulty" / "manifest.json").read_text())["artifacts"]
    only = set(faults.SHORT_ARGS["export"][1].split(","))
    assert only <= set(built) and "tflite_16x8" not in built   # `edge export --only` built just those


def test_the_checker_sees_a_bad_manifest(tmp_path):
    art = tmp_path / "artifacts" / "faulty"
    art.mkdir(parents=True)
    (art / "manifest.json").write_text('{"schema": 1, "artifacts": {')
    assert any("not JSON" in p for p in faults.inconsistencies(tmp_path))
    (art / "manifest.json").write_text('{"schema": 1}')
    assert any("missing" in p for p in faults.inconsistencies(tmp_path))


def test_a_killed_runs_temporary_file_counts_only_if_it_outlives_the_next_run(tmp_path):
    art = tmp_path / "artifacts" / "faulty"
    art.mkdir(parents=True)
    (art / ".model_float32.k3j2h1.onnx").write_bytes(b"half")
    assert faults.inconsistencies(tmp_path) == []
    assert any("outlived a completed run" in p for p in faults.inconsistencies(tmp_path, temps_are_bad=True))
