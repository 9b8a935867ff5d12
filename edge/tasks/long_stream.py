"""The long-stream signal the bench replays for a model (firmware_sim.bench.bench_model(stream_signal=...)):
its reference task's continuous series, standardized as in training. Dataset loading stays in the
tasks; the bench command loads it in a child process, so the bench's own process (whose memory every
runner child inherits at fork, and so its measured peak RSS) never imports pandas or the datasets."""
import json
from pathlib import Path

import numpy as np

MIN_STREAM_STEPS = 10_000   # the bench's long stream replays at least this many samples


def _training_preprocessing(artifacts_dir):
    """(preprocessing from artifacts_dir/train/training.json, its path) or (None, why not)."""
    p = Path(artifacts_dir) / "train" / "training.json"
    if not p.is_file():
        return None, {"status": "not_applicable", "reason": f"no {p.name} with the training preprocessing: "
                      "no known continuous series for this model"}
    try:
        return json.loads(p.read_text()).get("preprocessing") or {}, p
    except ValueError as e:
        return None, {"status": "not_applicable", "reason": f"{p}: {e}"}


def long_stream_signal(task, artifacts_dir, min_steps: int = MIN_STREAM_STEPS) -> dict:
    """The signal the bench's long stream replays (firmware_sim.bench.bench_model(stream_signal=...)):
    the task's continuous series standardized with the training mean/std recorded in
    artifacts_dir/train/training.json (the series' own when absent), [S, F] float32, repeated back
    to back when shorter than min_steps ("passes"); with what it is beside it. A model without a
    task, without training.json or of independent sequences gets {"status": "not_applicable", "reason"}."""
    prep, source = _training_preprocessing(artifacts_dir)
    if prep is None:
        return source
    feats = list(prep.get("features") or ())
    if task is None or task.series_name is None:
        return {"status": "not_applicable",
                "reason": f"the data is not one continuous series (features {feats[:4]}{'...' if len(feats) > 4 else ''}: "
                          "independent sequences), so there is no long stream to replay"}
    st = prep.get("standardize") or {}
    raw = task.raw_series()
    mean = np.asarray(st["mean"] if st.get("mean") is not None else raw.mean(axis=0), np.float64)
    std = np.asarray(st["std"] if st.get("std") is not None else raw.std(axis=0), np.float64)
    z = ((raw - mean) / std).astype(np.float32)
    passes = int(np.ceil(min_steps / len(z))) if len(z) < min_steps else 1
    return {"status": "ok", "name": task.series_name, "features": feats, "mean": st.get("mean"),
            "std": st.get("std"), "source": str(source), "description": task.series_description,
            "rows": int(len(z)), "passes": passes,
            "standardized_with": "training mean/std (train/training.json)" if st.get("mean") is not None
            else "the series' own mean/std",
            "signal": np.tile(z, (passes, 1))}


def child_signal_file(task: str | None, artifacts_dir: str, out_path: str) -> dict:
    """Child body: long_stream_signal for the named task, the signal saved as out_path (.npy);
    returns what it is with "signal_path", or the record saying why there is none."""
    from edge.tasks import get_task
    sig = long_stream_signal(get_task(task) if task else None, artifacts_dir)
    if "signal" not in sig:
        return sig
    np.save(out_path, sig.pop("signal"))
    return {**sig, "signal_path": str(out_path)}


def signal_loader(task: str | None, artifacts_dir, tmp_dir):
    """For bench_model(stream_signal=...): a function the bench calls only when the long stream
    runs; it loads the signal in an isolated child into tmp_dir."""
    def load() -> dict:
        from groundfloor.isolate import run_isolated
        r = run_isolated("edge.tasks.long_stream:child_signal_file",
                         {"task": task, "artifacts_dir": str(artifacts_dir),
                          "out_path": str(Path(tmp_dir) / "long_stream_signal.npy")}, timeout=300)
        return r.value if r.ok else {"status": r.status, "reason": f"loading the series failed: {r.error}"}
    return load
