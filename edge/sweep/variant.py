"""One sweep variant: its name and cache keys, the training task it becomes, and the real step a Ray
worker runs on it: train (tf-keras, seeded, edge.tasks.train), `edge export`, `edge quantize` when the
space asks for "budgeted", `edge bench` (with the emulated firmware where the profile runs it), and the
per-device points the Pareto stage reads. Every stage is the existing one; nothing is reimplemented."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge.sweep.space import BUDGETED, CELLS
from edge.tasks.base import ReferenceTask, Split
from groundfloor.cache import code_hash, key_of
from groundfloor.errors import BadInput
from groundfloor.fileio import sha256_file
from groundfloor.versions import tool_versions

ROOT = Path(__file__).resolve().parents[2]
TRAIN_CODE = [Path(__file__), ROOT / "edge/tasks/base.py", ROOT / "edge/tasks/train.py"]
# what a variant's figures depend on beyond its training: the export, quantize and bench code
PIPELINE_DIRS = ["export", "firmware_sim", "firmware_sim/runners", "firmware_sim/mcu", "groundfloor"]
PIPELINE_FILES = [ROOT / "edge/sweep/pareto.py", ROOT / "edge/budgets.py", ROOT / "edge/policy.py"]


def variant_id(v: dict, train_key: str) -> str:
    """The folder name of a variant: its grid values, readable, plus its training key."""
    return (f"{v['cell']}{v['units']}x{v['layers']}-w{v['window']}-e{v['epochs']}-d{v['dropout']:g}"
            f"-{train_key[:10]}")


def data_identity(space) -> dict:
    """What the training data is, for the keys: the reference task's code, or the data file's bytes."""
    if space.task:
        from edge.tasks import TASKS
        import inspect
        return {"task": space.task, "code": code_hash([inspect.getsourcefile(TASKS[space.task])])}
    return {"data_sha256": sha256_file(space.data), "kind": space.kind}


def train_key(v: dict, identity: dict) -> str:
    return key_of("sweep-train", v, identity, code_hash(TRAIN_CODE), tool_versions())


def pipeline_code() -> str:
    files = [f for d in PIPELINE_DIRS for f in (ROOT / d).glob("*") if f.suffix in (".py", ".c", ".h", ".ld", ".toml")]
    return code_hash(files + PIPELINE_FILES)


def result_key(tkey: str, space, profiles: list, code: str) -> str:
    """Everything a variant's result depends on: its training, the candidates, the device profiles
    (their contents, not only names), the bench settings and the pipeline code."""
    devs = [{k: v for k, v in p.as_dict().items() if k != "source_file"} for p in profiles]
    return key_of("sweep-result", tkey, space.candidates, devs, space.bench, code, tool_versions())


# --------------------------------------------------------------------------- the training task

class VariantTask(ReferenceTask):
    """A grid point as a ReferenceTask, so edge.tasks.train trains it with the shared recipe: the
    reference task's data at the variant's window (or the user's data), the variant's stack."""

    def __init__(self, variant: dict, name: str, task: str | None = None, data: Path | None = None,
                 kind: str = "regression"):
        self.v, self.name, self.kind, self.data = variant, name, kind, data
        self.window, self.epochs, self.seed = variant["window"], variant["epochs"], variant["seed"]
        self.batch_size, self.learning_rate = variant["batch_size"], variant["learning_rate"]
        self.base = None
        if task:
            from edge.tasks import get_task
            self.base = get_task(task)
            self.base.window = self.window      # every reference task windows its data by self.window
            self.units = self.base.units
        self.description = f"sweep variant {name} on {task or data}"
        self.outputs = getattr(self.base, "classes", 1) if kind == "classification" else 1

    def load(self) -> Split:
        if self.base is not None:
            return self.base.load()
        split = user_split(self.data, self.window, self.kind)
        self.outputs = int(max(split.y_train.max(), split.y_test.max())) + 1 if self.kind == "classification" \
            else int(split.y_train.shape[-1]) if split.y_train.ndim == 2 else 1
        return split

    def layers(self, tf_keras):
        L = tf_keras.layers
        cell = getattr(L, CELLS[self.v["cell"]])
        out = []
        for i in range(self.v["layers"]):
            out.append(cell(self.v["units"], return_sequences=i < self.v["layers"] - 1, name=f"{self.v['cell']}_{i + 1}"))
            if self.v["dropout"]:   # a Dropout layer, not the cell's own: the fused op has no dropout
                out.append(L.Dropout(self.v["dropout"], name=f"dropout_{i + 1}"))
        act = "softmax" if self.kind == "classification" else None
        return out + [L.Dense(self.outputs, activation=act, name="head")]


def _steps_and_features(path: Path) -> tuple[int, int] | None:
    """(T, F) of an .npz's windows; None for a CSV (it is windowed by the model's T)."""
    if path.suffix != ".npz":
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            x = z["x"] if "x" in z.files else z["x_calib"] if "x_calib" in z.files else None
            return None if x is None or x.ndim != 3 else (int(x.shape[1]), int(x.shape[2]))
    except Exception:
        return None   # load_data says what is wrong with it


def _csv_features(path: Path) -> int:
    from export.data import _csv_rows
    header, _ = _csv_rows(path)
    return len([h for h in header if h != "y"])


def user_split(path: Path, window: int, kind: str) -> Split:
    """The user's .npz / .csv (export/data.py's format) as training (x_calib) and test (x_eval)
    windows of `window` steps: an .npz's windows keep their last `window` steps."""
    from export.data import load_data
    tf_ = _steps_and_features(path)
    if tf_ is not None and window > tf_[0]:
        raise BadInput(path, f"space.window {window} is longer than the data's windows ({tf_[0]} steps)")
    d = load_data(path, tf_ if tf_ is not None else (window, _csv_features(path)))
    if "y_calib" not in d or "y_eval" not in d:
        raise BadInput(path, "the sweep trains every variant: the data needs targets ('y', or 'y_calib' and 'y_eval')")
    y_tr, y_te = d["y_calib"], d["y_eval"]
    if kind == "classification":
        y_tr, y_te = y_tr.astype(int).reshape(-1), y_te.astype(int).reshape(-1)
    elif y_tr.ndim == 1:
        y_tr, y_te = y_tr[:, None], y_te[:, None]
    return Split(d["x_calib"][:, -window:], y_tr, d["x_eval"][:, -window:], y_te,
                 {"source": str(path), "window_steps": window})


# --------------------------------------------------------------------------- the real step

def needed_artifacts(candidates) -> list:
    """The export artifacts the candidates need, with the ones they are made from (16x8 from int8)."""
    from export.pipeline import ARTIFACTS
    by_file = {s.file: n for n, s in ARTIFACTS.items()}
    out, todo = [], [c for c in candidates if c != BUDGETED]
    while todo:
        n = todo.pop()
        if n in out:
            continue
        out.append(n)
        src = by_file.get(ARTIFACTS[n].source)
        if src:
            todo.append(src)
    return out or ["tflite_float32"]   # "budgeted" alone: the export still needs one artifact


def _train(variant, ctx, art: Path, progress) -> dict:
    from edge.tasks.train import train_task
    from export.pipeline import read_json_or_none
    from groundfloor.fileio import write_json
    train_dir = art / "train"
    model, data, info_path = train_dir / "trained_tfkeras.h5", train_dir / "task_data.npz", train_dir / "training.json"
    info = read_json_or_none(info_path)
    if info and info.get("key") == ctx["train_key"] and model.exists() and data.exists():
        return info
    task = VariantTask(variant, ctx["variant_id"], ctx.get("task"), Path(ctx["data"]) if ctx.get("data") else None,
                       ctx["kind"])
    info = {"key": ctx["train_key"], "variant": variant, **train_task(task, model, data, progress)}
    write_json(info_path, info)
    return info


def run_variant(variant: dict, ctx: dict) -> dict:
    """Train, export, quantize and bench one variant in ctx["art_dir"] (bench.json in ctx["report_dir"]);
    returns its summary with the per-device points (edge.sweep.pareto.variant_points)."""
    from edge.sweep.pareto import variant_points
    from export.pipeline import export_model
    from firmware_sim.bench import bench_model
    from firmware_sim.runners import RUNNERS, RunConfig
    from groundfloor.isolate import shared_worker
    from groundfloor.locks import folder_lock
    art, rep = Path(ctx["art_dir"]), Path(ctx["report_dir"])
    art.mkdir(parents=True, exist_ok=True)
    seconds = {}
    with open(art / "sweep.log", "a") as log, folder_lock(art, "edge sweep"):
        def progress(msg):
            log.write(f"{msg}\n")
            log.flush()
        t = time.perf_counter()
        info = _train(variant, ctx, art, progress)
        seconds["train"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        extra = {"sweep_variant": variant, "training": {k: v for k, v in info.items() if k != "key"}}
        with shared_worker():
            manifest = export_model(art / "train/trained_tfkeras.h5", art / "train/task_data.npz", art,
                                    name=ctx["variant_id"], task=ctx["kind"], only=needed_artifacts(ctx["candidates"]),
                                    extra_source_info=extra, progress=progress)
            seconds["export"] = round(time.perf_counter() - t, 2)
            if BUDGETED in ctx["candidates"]:
                from export.budgeted import quantize_model
                t = time.perf_counter()
                quantize_model(art, progress=progress)
                seconds["quantize"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        b = ctx["bench"]
        runners = [r for r in RUNNERS if b["emulated"] or r != "emulated"]
        bench = bench_model(art, ctx["devices"], rep / "bench.json", progress=progress, runners=runners,
                            config=RunConfig(runs=b["runs"], max_samples=b["max_samples"], timeout_s=b["timeout"]),
                            streaming=False, long_stream=False)
        seconds["bench"] = round(time.perf_counter() - t, 2)
    return {"variant_id": ctx["variant_id"], "params": manifest["source"].get("params"),
            "float_metric": manifest.get("float_metric"), "seconds": seconds,
            "trained_seconds": info.get("seconds"), **variant_points(bench, ctx["candidates"], ctx["kind"])}
