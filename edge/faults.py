"""Kill -9 at random points of `edge export`, `edge quantize` and `edge bench` on a small model,
then check that nothing is half-written or disagrees with what it describes, and that a rerun
completes, rebuilding only what is missing.

    python -m edge.faults --kills 20 --seed 0          (or `make faults`)

Checked after every kill: manifest.json (when present) parses, follows groundfloor/contracts.py,
and every artifact it calls ok is on disk with the sha256 it records; bench.json likewise; the
bench cache's entries parse. After each rerun, the same, and no temporary file left (a killed
run's hidden temporaries are never read and the next run clears them under the folder lock).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge import toolmain

STAGES = ("export", "quantize", "bench")
# The short campaign (the test suite's): three artifacts and the first candidate within budget,
# so each stage is a fraction of the whole; the kills land in the same code.
SHORT_ARGS = {"export": ["--only", "tflite_float32,tflite_int8,onnx_float32"], "quantize": ["--first"],
              "bench": []}


def build_model(out_dir: str) -> dict:
    """Child body: a small tf-keras LSTM regressor and its data (seeded), saved as .h5 + .npz."""
    import numpy as np
    from export.tfenv import seed_everything, tf_and_keras2
    seed_everything(0)
    _, keras = tf_and_keras2()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12, 2)).astype(np.float32)
    y = (x[:, -3:, :1].mean(axis=1) + 0.1 * x[:, -1, 1:]).astype(np.float32)
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(12, 2), batch_size=1),
                              keras.layers.LSTM(8), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    out = Path(out_dir)
    model.save(out / "faulty.h5")
    np.savez(out / "faulty.npz", x=x, y=y)
    return {"ok": True}


def _command(stage: str, work: Path) -> list:
    base = [sys.executable, "-m", "edge.cli", "--config", str(work / "edge.toml")]
    if stage == "export":
        return base + ["export", "--model", str(work / "faulty.h5"), "--data", str(work / "faulty.npz"),
                       "--name", "faulty", "--artifacts-dir", str(work / "artifacts")]
    if stage == "quantize":
        return base + ["quantize", "--models", "faulty", "--artifacts-dir", str(work / "artifacts")]
    return base + ["bench", "--models", "faulty", "--devices", "cortex_m4f", "--runs", "5", "--warmup", "1",
                   "--max-samples", "40", "--no-long-stream", "--artifacts-dir", str(work / "artifacts")]


def _env(work: Path) -> dict:
    return dict(os.environ, EDGE_CACHE_DIR=str(work / "cache"), PYTHONUNBUFFERED="1")


def inconsistencies(work: Path, temps_are_bad: bool = False) -> list[str]:
    """Every file that is half-written or disagrees with the record describing it. A killed run's
    hidden temporary files are never read (only ever renamed into place) and the next run clears
    them under the folder lock: they count only when they outlive a completed run (temps_are_bad)."""
    from groundfloor import contracts
    from groundfloor.fileio import sha256_file
    from groundfloor.locks import stale_temps
    bad = []
    art = work / "artifacts" / "faulty"
    for path, kind in ((art / "manifest.json", "manifest"), (work / "reports" / "faulty" / "bench.json", "bench")):
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text())
        except ValueError as e:
            bad.append(f"{path}: not JSON ({e})")
            continue
        bad += [f"{path}: {p}" for p in contracts.problems(contracts.SCHEMAS[kind], doc)]
        if kind == "manifest" and isinstance(doc.get("artifacts"), dict):
            for name, a in doc["artifacts"].items():
                f = art / a.get("file", "")
                if a.get("status") == "ok" and (not f.is_file() or sha256_file(f) != a.get("sha256")):
                    bad.append(f"{path}: {name} is ok in the manifest but {f.name} is missing or differs")
    for entry in (work / "cache").rglob("*.json") if (work / "cache").exists() else []:
        try:
            json.loads(entry.read_text())
        except ValueError:
            bad.append(f"{entry}: a cache entry is not JSON")
    if temps_are_bad and art.exists() and (not (art / ".edge.lock").exists() or _unlocked(art)):
        bad += [f"{p}: temporary file outlived a completed run" for p in stale_temps(art)]
    return bad


def _unlocked(folder: Path) -> bool:
    import fcntl
    with open(folder / ".edge.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def _run(command, work, timeout=1800):
    p = subprocess.run(command, env=_env(work), capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def _kill_during(command, work, after_s) -> bool:
    """Start the stage's command, kill -9 it after after_s seconds; False when it finished first."""
    p = subprocess.Popen(command, env=_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(0.3)   # its children get SIGKILL from the kernel (groundfloor.isolate)
        return True


def campaign(work: Path, kills: int, seed: int, progress=print, short: bool = False) -> dict:
    """short: SHORT_ARGS on every stage (the test suite's version)."""
    from groundfloor.isolate import run_isolated
    work.mkdir(parents=True, exist_ok=True)
    (work / "edge.toml").write_text(f'artifacts_dir = "{work / "artifacts"}"\nreports_dir = "{work / "reports"}"\n'
                                    'devices = ["cortex_m4f"]\n')
    r = run_isolated("edge.faults:build_model", {"out_dir": str(work)}, timeout=600)
    if not r.ok:
        raise RuntimeError(f"building the test model failed: {r.error}")
    rng = random.Random(seed)
    commands = {stage: _command(stage, work) + (SHORT_ARGS[stage] if short else []) for stage in STAGES}
    full = {}
    for stage in STAGES:   # one clean pass: how long each stage takes, so kills land inside it
        t0 = time.perf_counter()
        rc, out = _run(commands[stage], work)
        full[stage] = time.perf_counter() - t0
        if rc not in (0, 1):
            raise RuntimeError(f"clean {stage} failed ({rc}): {out[-500:]}")
    result = {"kills": 0, "finished_before_kill": 0, "inconsistent": [], "stage_seconds": full, "reruns": {}}
    for k in range(kills):
        stage = STAGES[k % len(STAGES)]
        # make the run do real work: half the export kills hit a first export, quantize searches afresh
        if stage == "export" and rng.random() < 0.5:
            shutil.rmtree(work / "artifacts" / "faulty", ignore_errors=True)
        if stage == "quantize":   # only its cache: the budgeted file the manifest lists stays
            (work / "artifacts" / "faulty" / "quantize" / "search.json").unlink(missing_ok=True)
        after = rng.uniform(0.3, max(0.5, 0.9 * full[stage]))
        killed = _kill_during(commands[stage], work, after)
        result["kills" if killed else "finished_before_kill"] += 1
        found = inconsistencies(work)
        result["inconsistent"] += [f"kill {k} ({stage} at {after:.1f} s): {b}" for b in found]
        rc, out = _run(commands[stage], work)   # the rerun completes
        rebuilt = out.count("converting ...")
        result["reruns"].setdefault(stage, []).append({"rc": rc, "rebuilt": rebuilt})
        if rc not in (0, 1):
            result["inconsistent"].append(f"kill {k}: the rerun of {stage} failed ({rc}): {out.strip()[-300:]}")
        result["inconsistent"] += [f"after rerun {k} ({stage}): {b}" for b in inconsistencies(work, True)]
        progress(f"  kill {k + 1}/{kills}: {stage} at {after:.1f} s ({'killed' if killed else 'finished'}), "
                 f"rerun rc {rc}, rebuilt {rebuilt}, inconsistent so far {len(result['inconsistent'])}")
    return result


def kill_campaign(work: Path, kills: int, seed: int, out: Path) -> int:
    """The campaign in a fresh `work` folder, its report written to out; 0 if nothing was inconsistent."""
    shutil.rmtree(work, ignore_errors=True)
    result = campaign(work.resolve(), kills, seed)
    bad = result["inconsistent"]
    return toolmain.verdict(out, result, not bad, f": {result['kills']} kills ({result['finished_before_kill']} "
                            f"runs finished first), {len(bad)} inconsistencies"
                            + "".join(f"\n    {line}" for line in bad[:20]))


def main(argv=None) -> int:
    p = toolmain.parser("faults", __doc__, out="reports/faults.json")
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("reports/faults"), help="scratch folder (replaced)")
    return toolmain.run(p, argv, kill_campaign)


if __name__ == "__main__":
    sys.exit(main())
