"""Export a reference task: train it (cached) and run the ordinary export on the result."""
import inspect as pyinspect
from pathlib import Path

from edge.tasks import get_task
from export.pipeline import export_model
from groundfloor.fileio import read_json_or_none, sha256_json, write_json
from groundfloor.versions import tool_versions


def export_reference(task_name, out_dir, progress=print, only=None) -> dict:
    task = get_task(task_name)
    out_dir = Path(out_dir)
    train_dir = out_dir / "train"
    model_path, data_path, info_path = (train_dir / "trained_tfkeras.h5", train_dir / "task_data.npz",
                                        train_dir / "training.json")
    # Retrain only when the task's code or the tools change: training is deterministic.
    import edge.tasks.base, edge.tasks.train
    code = "".join(pyinspect.getsource(m) for m in (type(task), edge.tasks.base, edge.tasks.train))
    key = sha256_json({"task": task_name, "code": code, "versions": tool_versions()})
    info = read_json_or_none(info_path)
    if not (info and info.get("key") == key and model_path.exists() and data_path.exists()):
        progress(f"[{task_name}] training: {task.description}")
        from edge.tasks.train import train_task
        info = {"key": key, **train_task(task, model_path, data_path, progress)}
        write_json(info_path, info)
        progress(f"[{task_name}] trained in {info['seconds']} s")
    extra = {"reference_task": task_name, "description": task.description, "units": task.units,
             "training": {k: v for k, v in info.items() if k != "key"}}
    return export_model(model_path, data_path, out_dir, name=task_name, task=task.kind,
                        extra_source_info=extra, progress=progress, only=only)
