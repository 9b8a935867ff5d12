"""--jobs: models of one stage as parallel `edge` children, their lines relayed under the
model's name, the worst exit code returned."""
import subprocess
import sys

from edge.jobs import jobs_for, worst


def test_the_worst_exit_code_wins_bad_input_first():
    assert worst([0, 0]) == 0
    assert worst([0, 1, 0]) == 1
    assert worst([1, 130]) == 130
    assert worst([1, 2, 130]) == 2
    assert worst([0, 3]) == 3


def test_jobs_never_exceed_the_models():
    assert jobs_for(4, 3) == 3
    assert jobs_for(1, 3) == 1
    assert jobs_for(None, 1) == 1
    assert 1 <= jobs_for(None, 64) <= 64
    assert jobs_for(0, 5) >= 1


def test_each_child_reports_under_its_model_and_bad_input_is_exit_2(tmp_path):
    """Two models without artifacts: each child refuses in one line, named by its model."""
    for name in ("alpha", "beta"):
        (tmp_path / f"{name}.h5").write_bytes(b"not a model")
        (tmp_path / f"{name}.npz").write_bytes(b"not data")
    cfg = tmp_path / "edge.toml"
    cfg.write_text("".join(f'[models.{n}]\npath = "{n}.h5"\ndata = "{n}.npz"\n' for n in ("alpha", "beta")))
    r = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(cfg), "quantize", "--jobs", "2",
                        "--artifacts-dir", str(tmp_path / "artifacts")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "2 models, 2 at a time" in r.stdout
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert sorted(line.split()[0] for line in errors) == ["[alpha]", "[beta]"], r.stderr
    assert all("edge: error:" in line for line in errors)
    assert not (tmp_path / "artifacts").exists()      # nothing written by a refused stage
