"""`edge quantize`: run the accuracy-budgeted search on an exported model and register the
chosen candidate in its manifest as the artifact `budgeted`, so bench, report and check
treat it like every other artifact. The choice is made on validation windows split off
data.npz's x_calib; x_eval only measures the reported figures."""
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput
from export import inspect
from groundfloor import contracts
from groundfloor.fileio import read_json, read_json_or_none, sha256_file, sha256_json, write_json
from export.pipeline import DATA_FILE, MANIFEST, SOURCE_FILE

SEARCH_DIR = "quantize"
DEFAULT_BUDGETS = {"regression": {"max_rmse_increase": 0.02}, "classification": {"max_accuracy_drop": 0.5}}


def quantize_model(artifacts_dir, budget=None, exhaustive=True, progress=print) -> dict:
    from export.quantize_search import default_candidates, search
    from export.search_judge import SPLIT_SEED, VALIDATION_FRACTION, check_budget
    artifacts_dir = Path(artifacts_dir)
    manifest_path = artifacts_dir / MANIFEST
    if not manifest_path.exists():
        raise BadInput(manifest_path, "no manifest: run `edge export` for this model first")
    manifest = read_json(manifest_path)
    task = manifest["task"]
    budget = budget or DEFAULT_BUDGETS[task]
    check_budget(task, budget)  # a budget that does not fit the task fails before any work
    out = artifacts_dir / SEARCH_DIR
    key = sha256_json({"source": sha256_file(artifacts_dir / SOURCE_FILE),
                       "data": sha256_file(artifacts_dir / DATA_FILE), "budget": budget,
                       "exhaustive": exhaustive, "versions": manifest["tool_versions"],
                       "candidates": default_candidates(),
                       "split": {"fraction": VALIDATION_FRACTION, "seed": SPLIT_SEED, "choice_on": "validation"}})
    previous = read_json_or_none(out / "search.json")
    if previous and previous.get("cache_key") == key and _chosen_intact(previous, out):
        progress(f"[{manifest['model']}] quantization search up to date (cache hit)")
        result = previous
    else:
        d = np.load(artifacts_dir / DATA_FILE)
        if "y_eval" not in d.files:
            raise BadInput(artifacts_dir / DATA_FILE, "the search needs ground truth (y_eval)")
        res = search(artifacts_dir / SOURCE_FILE, d["x_calib"], d["x_eval"], d["y_eval"], task=task,
                     budget=budget, out_dir=out, progress=progress, y_float=d["y_float"],
                     y_calib=d["y_calib"] if "y_calib" in d.files else None, exhaustive=exhaustive,
                     validation_fraction=VALIDATION_FRACTION, split_seed=SPLIT_SEED)
        result = dict(res.to_dict(), cache_key=key)
        write_json(out / "search.json", result)
    _register(manifest, manifest_path, result, out)
    return result


def _register(manifest, manifest_path, result, out):
    chosen = result.get("chosen")
    arts = manifest["artifacts"]
    arts.pop("budgeted", None)
    if chosen and chosen.get("file"):
        path = out / chosen["file"]
        info = inspect.summary(path)
        arts["budgeted"] = {
            "file": f"{SEARCH_DIR}/{chosen['file']}", "format": "onnx" if path.suffix == ".onnx" else "tflite",
            "mode": chosen["kind"], "quantized": bool(chosen.get("quantized")), "streaming": False,
            "status": "ok", "error": "", "bytes": path.stat().st_size, "sha256": sha256_file(path),
            "ops": info["ops"], "op_counts": info["op_counts"],
            "weight_bytes_by_dtype": info["weight_bytes_by_dtype"], "io": info["io"],
            "options": dict(chosen.get("options", {}), candidate=chosen["name"], budget=result["budget"]),
            "tool_versions": manifest["tool_versions"], "seconds": chosen.get("seconds"),
            "cache_key": result["cache_key"],
            "notes": [f"chosen by the accuracy-budgeted search: {result['reason']}"],
        }
    contracts.require("manifest", manifest)
    write_json(manifest_path, manifest)


def _chosen_intact(result, out):
    chosen = result.get("chosen")
    return not chosen or not chosen.get("file") or (out / chosen["file"]).exists()
