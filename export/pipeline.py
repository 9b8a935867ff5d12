"""`edge export`: one model in, every artifact and a manifest out.

    model + data -> lint -> tf-keras batch-1 rebuild (verified) -> source_tfkeras.h5, data.npz
                 -> each artifact in ARTIFACTS, converted in a child process
                 -> manifest.json

Incremental: an artifact whose cache key (model hash, data hash, its options, tool
versions) matches the manifest and whose file is intact is not rebuilt. The check runs
before TensorFlow is imported, so an up-to-date export takes about a second.
"""
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from groundfloor import contracts
from groundfloor.errors import BadInput
from groundfloor.isolate import run_isolated
from export import inspect
from groundfloor.fileio import read_json_or_none, sha256_file, sha256_json, write_json, write_npz
from groundfloor.versions import tool_versions

SOURCE_FILE = "source_tfkeras.h5"
DATA_FILE = "data.npz"
MANIFEST = "manifest.json"
PARTIAL = ".partial_manifest.json"   # artifacts built so far by a run that has not finished
DEFAULT_CALIB_WINDOWS = 100  # the converter's usual representative-set size


@dataclass
class ArtifactSpec:
    file: str
    format: str
    mode: str
    target: str                     # "module:function" run in a child process
    kwargs: dict = field(default_factory=dict)
    source: str = SOURCE_FILE       # the file it is made from ...
    source_arg: str = "model_path"  # ... passed to the builder under this name
    with_model: bool = False        # also pass the tf-keras source model as model_path
    calib: bool = False             # needs calibration windows (data.npz as calib_path)
    note: str = ""
    timeout: float = 600.0


# The registry of what `edge export` builds; later stages add entries here, not if-chains.
ARTIFACTS = {
    "tflite_float32": ArtifactSpec("model_float32.tflite", "tflite", "float32", "export.tflite:convert",
                                   {"mode": "float32"}),
    "tflite_dynamic": ArtifactSpec("model_dynamic.tflite", "tflite", "dynamic", "export.tflite:convert",
                                   {"mode": "dynamic"}),
    "tflite_int8": ArtifactSpec("model_int8.tflite", "tflite", "int8", "export.tflite:convert",
                                {"mode": "int8", "calib_samples": DEFAULT_CALIB_WINDOWS}, calib=True),
    "tflite_weight_int8": ArtifactSpec("model_weight_int8.tflite", "tflite", "weight_int8",
                                       "export.tflite:convert", {"mode": "weight_int8"},
                                       note="weight-only int8 needs the unrolled graph (the fused "
                                            "LSTM keeps float weights in dynamic-range mode): int8 "
                                            "weights, float activations, several times the ops and bytes"),
    "onnx_float32": ArtifactSpec("model_float32.onnx", "onnx", "float32", "export.onnx_export:to_onnx"),
    "tflite_16x8": ArtifactSpec("model_16x8.tflite", "tflite", "16x8", "export.quant16x8:convert_artifact",
                                source="model_int8.tflite", source_arg="src", with_model=True, calib=True,
                                note="int16 activations, int8 weights: rewritten from the int8 model "
                                     "(the converter refuses 16x8 LSTMs); runs in TFLite Micro only"),
    "onnx_dynamic_int8": ArtifactSpec("model_dynamic_int8.onnx", "onnx", "dynamic_int8",
                                      "export.onnx_export:quantize_dynamic_onnx",
                                      source="model_float32.onnx", source_arg="src"),
    "onnx_qdq_int8": ArtifactSpec("model_qdq_int8.onnx", "onnx", "qdq_int8",
                                  "export.onnx_export:quantize_qdq_onnx",
                                  {"calib_samples": DEFAULT_CALIB_WINDOWS}, source="model_float32.onnx",
                                  source_arg="src", calib=True,
                                  note="LSTM stays float: onnxruntime does not statically quantize LSTM"),
}


# Streaming twins (one step per call, state carried between calls) are made together by
# export/streaming.py; their file names map to these artifact names.
STREAM_ARTIFACTS = {"stream_float32.tflite": "tflite_stream_float32",
                    "stream_int8.tflite": "tflite_stream_int8",
                    "stream_float32.onnx": "onnx_stream_float32",
                    "stream_dynamic_int8.onnx": "onnx_stream_dynamic_int8"}


def export_model(model_path, data_path, out_dir, name=None, task="regression", only=None,
                 extra_source_info=None, streaming=True, progress=print, trust_model_code=False) -> dict:
    """Export one model. Returns the manifest. Raises BadInput for bad input (nothing written).
    A model file carrying Python code (a Lambda) is refused unless trust_model_code."""
    model_path, data_path, out_dir = Path(model_path), Path(data_path), Path(out_dir)
    for p, what in ((model_path, "model"), (data_path, "data")):
        if not p.exists():
            raise BadInput(p, f"{what} file not found")
    name = name or model_path.stem
    selected = {k: v for k, v in ARTIFACTS.items() if only is None or k in only}
    versions = tool_versions()
    inputs_key = {"model": sha256_file(model_path), "data": sha256_file(data_path), "task": task,
                  "versions": versions}
    old = _read_manifest(out_dir)
    streaming = streaming and only is None
    if (old and old.get("inputs_key") == sha256_json(inputs_key) and _all_fresh(old, out_dir, selected)
            and (not streaming or _stream_fresh(old, out_dir))):
        progress(f"[{name}] up to date: {len(selected)} artifacts unchanged (cache hit)")
        old["cache_hit"] = True
        return old

    from export.data import precheck
    precheck(data_path)     # a bad data file is refused before the model (and TensorFlow) loads
    progress(f"[{name}] loading {model_path}")
    source = _prepare_source(model_path, data_path, out_dir, progress, trust_model_code)
    manifest = {
        "schema": 1, "model": name, "task": task,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs_key": sha256_json(inputs_key), "tool_versions": versions,
        "source": dict(source["info"], **(extra_source_info or {})),
        "data": source["data_info"], "float_metric": source["float_metric"], "artifacts": {},
    }
    old_artifacts = dict((old or {}).get("artifacts", {}), **_partial_records(out_dir, manifest["inputs_key"]))
    for art_name, spec in selected.items():
        manifest["artifacts"][art_name] = _build_artifact(art_name, spec, out_dir, manifest,
                                                         old_artifacts.get(art_name), versions, progress)
        # a run killed from here on resumes with what it built (the manifest is written last)
        write_json(out_dir / PARTIAL, {"inputs_key": manifest["inputs_key"], "artifacts": manifest["artifacts"]})
    if streaming:
        manifest["streaming"] = _build_streaming(out_dir, manifest, old, progress)
        manifest["artifacts"].update(manifest["streaming"].pop("artifacts", {}))
    # Artifacts later stages registered (edge quantize's "budgeted") stay while the model and
    # data they were made from are unchanged.
    if old and old.get("inputs_key") == manifest["inputs_key"]:
        for art_name, art in old.get("artifacts", {}).items():
            if art_name not in manifest["artifacts"] and art.get("status") == "ok" \
                    and _intact(out_dir / art["file"], art["sha256"]):
                manifest["artifacts"][art_name] = art
    contracts.require("manifest", manifest)   # what bench, report and gate read
    write_json(out_dir / MANIFEST, manifest)
    (out_dir / PARTIAL).unlink(missing_ok=True)
    ok = sum(a["status"] == "ok" for a in manifest["artifacts"].values())
    progress(f"[{name}] {ok}/{len(manifest['artifacts'])} artifacts ok -> {out_dir / MANIFEST}")
    manifest["cache_hit"] = False
    return manifest


def _partial_records(out_dir, inputs_key) -> dict:
    """The artifacts a killed run of the same inputs finished before the manifest was written."""
    partial = read_json_or_none(out_dir / PARTIAL)
    if not partial or partial.get("inputs_key") != inputs_key:
        return {}
    return {k: v for k, v in (partial.get("artifacts") or {}).items() if isinstance(v, dict)}


def _read_manifest(out_dir):
    return read_json_or_none(out_dir / MANIFEST)


def _all_fresh(manifest, out_dir, selected):
    arts = manifest.get("artifacts", {})
    for name, spec in selected.items():
        a = arts.get(name)
        if not a or a.get("cache_key") != _artifact_key(name, spec, manifest["source"]["sha256"],
                                                         manifest["data"].get("source_sha256"),
                                                         manifest["tool_versions"], arts):
            return False
        if a["status"] == "ok" and not _ran_and_intact(out_dir, a):
            return False
    return all((out_dir / f).exists() for f in (SOURCE_FILE, DATA_FILE))


def _intact(path, sha):
    return path.exists() and sha256_file(path) == sha


def _ran_and_intact(out_dir, record):
    """An ok record is reused only if its file is the one recorded and it has run (a record from
    before export ran every artifact is rebuilt, and run, once)."""
    return "verified_with" in record and _intact(out_dir / record["file"], record["sha256"])


def _artifact_key(name, spec, source_sha, data_sha, versions, artifacts):
    return sha256_json({"artifact": name, "file": spec.file, "target": spec.target, "kwargs": spec.kwargs,
                        "source": spec.source, "model": source_sha, "data": data_sha, "versions": versions,
                        "code": _builder_code(spec.target), "made_from": _made_from_sha(spec, artifacts)})


def _made_from_sha(spec, artifacts):
    """An artifact made from another artifact is rebuilt when that one changes."""
    if spec.source == SOURCE_FILE:
        return None
    return next((a.get("sha256") for a in artifacts.values() if a.get("file") == spec.source), None)


def _builder_code(target):
    """The source of the builder module and of every export module it imports (lazily too) is
    part of the key: a fix to a converter, or to a rewrite it calls, rebuilds its files."""
    return sha256_json({name: sha256_file(path) for name, path in sorted(_export_closure(target.split(":")[0]).items())})


def _export_closure(module: str) -> dict:
    """{module name: source path} of module and the export.* modules it imports, transitively."""
    import ast
    from importlib.util import find_spec
    found, todo = {}, [module]
    while todo:
        name = todo.pop()
        spec = find_spec(name) if name not in found else None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        found[name] = spec.origin
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.ImportFrom) and node.module == "export":
                names = [f"export.{a.name}" for a in node.names]
            todo += [n for n in names if n.startswith("export.") and n not in found]
    return found


def _prepare_source(model_path, data_path, out_dir, progress, trust_model_code=False):
    """Lint, load, rebuild in tf-keras with batch 1, verify, compute the float reference."""
    from export import keras_bridge
    from export.data import load_data
    from export.lint import lint_model
    model, fmt = keras_bridge.load_any(model_path, trust_code=trust_model_code, data_path=data_path)
    report = lint_model(model)
    if report.refused:
        row = report.refused[0]
        raise BadInput(model_path, f"layer '{row.layer}' ({row.cls}) cannot be converted: {row.reason}")
    input_shape = keras_bridge.input_shape_of(model)
    data = load_data(data_path, input_shape)
    rebuilt = keras_bridge.rebuild_batch1(model, overrides=report.overrides)
    diff = keras_bridge.verify_same(model, rebuilt, data["x_eval"])
    progress(f"  rebuilt in tf-keras with batch 1 (max abs difference {diff:.2g})"
             + (f", changed for conversion: {report.overrides}" if report.overrides else ""))
    y_float = _predict(rebuilt, data["x_eval"])
    out_dir.mkdir(parents=True, exist_ok=True)
    from groundfloor.fileio import move_into_place, temp_path_for
    tmp = temp_path_for(out_dir / SOURCE_FILE)
    rebuilt.save(tmp, save_format="h5")
    move_into_place(tmp, out_dir / SOURCE_FILE)
    write_npz(out_dir / DATA_FILE, y_float=y_float, **data)
    info = {"path": str(model_path), "sha256": sha256_file(model_path), "format": fmt,
            "rebuilt_in_tf_keras": True, "rebuild_max_abs_diff": diff,
            "rebuild_tolerance": keras_bridge.REBUILD_TOLERANCE,
            "rebuild_verified_against": keras_bridge.verified_against(model),
            "rebuild_notes": keras_bridge.rebuild_notes(model),
            "input_shape": [1, *input_shape], "output_shape": [1, *y_float.shape[1:]],
            "params": int(rebuilt.count_params()), "lint": report.to_json(),
            "unrolled_layers": list(report.needs_unroll), "rebuild_overrides": report.overrides}
    data_info = {"file": DATA_FILE, "sha256": sha256_file(out_dir / DATA_FILE),
                 "source": str(data_path), "source_sha256": sha256_file(data_path),
                 "calib_samples": int(len(data["x_calib"])), "eval_samples": int(len(data["x_eval"])),
                 "has_ground_truth": "y_eval" in data}
    return {"info": info, "data_info": data_info, "float_metric": _float_metric(data, y_float)}


def _predict(model, x):
    from export.tfenv import windows_outputs
    return windows_outputs(model, x).astype(np.float32)


def _float_metric(data, y_float):
    # float32 arithmetic, as the manifests always recorded it (groundfloor.metrics works in
    # float64: the last digits would change)
    if "y_eval" not in data:
        return None
    y = data["y_eval"]
    if y_float.shape[-1] > 1 and y.ndim == 1:  # class labels vs probabilities
        return {"name": "accuracy", "value": float(np.mean(np.argmax(y_float, -1) == y.astype(int)))}
    return {"name": "rmse", "value": float(np.sqrt(np.mean((y_float.reshape(y.shape) - y) ** 2)))}


def _build_artifact(name, spec, out_dir, manifest, old, versions, progress):
    key = _artifact_key(name, spec, manifest["source"]["sha256"], manifest["data"]["source_sha256"], versions,
                        manifest["artifacts"])
    path = out_dir / spec.file
    if old and old.get("cache_key") == key and (
            old["status"] == "not_applicable" or old["status"] == "ok" and _ran_and_intact(out_dir, old)):
        progress(f"  {name}: unchanged")
        return old
    progress(f"  {name}: converting ...")
    src = out_dir / spec.source
    kwargs = dict(spec.kwargs, out_path=str(path), **{spec.source_arg: str(src)})
    if spec.with_model:
        kwargs["model_path"] = str(out_dir / SOURCE_FILE)
    if spec.calib:
        kwargs["calib_path"] = str(out_dir / DATA_FILE)
    record = {"file": spec.file, "format": spec.format, "mode": spec.mode, "streaming": False,
              "cache_key": key, "tool_versions": versions, "notes": [spec.note] if spec.note else []}
    if spec.source != SOURCE_FILE:
        record["made_from"] = spec.source
    if not src.exists():
        result = None
        record.update(status="failed", error=f"its source {spec.source} was not built")
    else:
        # the builder, then one window through what it wrote, in the same child
        result = run_isolated("export.verify_run:build_and_run",
                              {"target": spec.target, "kwargs": kwargs, "window_path": str(out_dir / DATA_FILE)},
                              timeout=spec.timeout)
        if not result.ok:
            record.update(status="failed", error=result.error)
    if result is None or not result.ok:
        path.unlink(missing_ok=True)  # never leave a stale file beside a failed entry
        if record["error"].startswith("NotApplicable:"):  # e.g. 16x8 of a Bidirectional model
            record.update(status="not_applicable", error=record["error"].split(":", 1)[1].strip())
            progress(f"  {name}: not applicable ({record['error']})")
        else:
            progress(f"  {name}: FAILED ({record['error']})")
        return record
    info = inspect.summary(path)
    record.update(status="ok", error="", bytes=path.stat().st_size, sha256=sha256_file(path),
                  seconds=round(result.value["seconds"], 3), options=result.value["options"],
                  ops=info["ops"], op_counts=info["op_counts"],
                  weight_bytes_by_dtype=info["weight_bytes_by_dtype"], io=info["io"],
                  quantized=inspect.is_quantized(info), verified_with=result.value["verified_with"])
    record["notes"] += result.value.get("notes", [])
    if spec.mode != "float32" and not record["quantized"]:
        record["notes"].append("NOT QUANTIZED: the weights stayed float "
                               f"({info['weight_bytes_by_dtype']}); this file is a float model")
    progress(f"  {name}: {record['bytes']:,} B, {'int8 weights' if record['quantized'] else 'float weights'}"
             f", {record['seconds']:.1f} s, ran in {record['verified_with']}")
    return record


def _stream_key(manifest):
    int8 = manifest["artifacts"].get("tflite_int8", {})
    return sha256_json({"stage": "streaming", "model": manifest["source"]["sha256"],
                        "data": manifest["data"].get("source_sha256"), "versions": manifest["tool_versions"],
                        "int8": int8.get("sha256"), "code": _builder_code("export.streaming")})


def _stream_fresh(manifest, out_dir):
    st = manifest.get("streaming")
    if not st or st.get("cache_key") != _stream_key(manifest):
        return False
    return all(_ran_and_intact(out_dir, a) for a in manifest["artifacts"].values()
               if a.get("streaming") and a["status"] == "ok")


def _build_streaming(out_dir, manifest, old, progress):
    """The streaming twins, or the reason the model cannot stream (e.g. Bidirectional)."""
    from export.streaming import NotStreamable, export_streaming
    key = _stream_key(manifest)
    if old and _stream_fresh(dict(old, artifacts=old.get("artifacts", {})), out_dir) \
            and old["streaming"]["cache_key"] == key:
        progress("  streaming: unchanged")
        arts = {n: a for n, a in old["artifacts"].items() if a.get("streaming")}
        return dict(old["streaming"], artifacts=arts)
    progress("  streaming: building one-step models with carried state ...")
    try:
        records = export_streaming(out_dir / SOURCE_FILE, out_dir, out_dir / DATA_FILE,
                                   whole_int8_path=out_dir / ARTIFACTS["tflite_int8"].file)
    except NotStreamable as e:
        progress(f"  streaming: not possible ({e.problem})")
        return {"cache_key": key, "status": "not_streamable", "reason": e.problem}
    except (RuntimeError, ValueError) as e:   # ValueError: runtime.load refused a twin it checked
        progress(f"  streaming: FAILED ({e})")
        return {"cache_key": key, "status": "failed", "reason": str(e).splitlines()[0]}
    arts = {}
    for file_name, rec in records.items():
        art_name = STREAM_ARTIFACTS.get(file_name, file_name)
        rec["cache_key"] = key
        if rec["status"] == "ok":
            _run_stream_artifact(out_dir, rec)
        arts[art_name] = rec
        if rec["status"] == "ok":
            progress(f"  {art_name}: {rec['bytes']:,} B")
        else:
            progress(f"  {art_name}: FAILED ({rec['error']})")
    return {"cache_key": key, "status": "ok", "artifacts": arts}


def _run_stream_artifact(out_dir, rec):
    """The streaming twins are built by export/streaming.py; run each once as the others are."""
    r = run_isolated("export.verify_run:run_once", {"path": str(out_dir / rec["file"]),
                                                    "window_path": str(out_dir / DATA_FILE)}, timeout=300)
    if r.ok:
        rec["verified_with"] = r.value
        return
    (out_dir / rec["file"]).unlink(missing_ok=True)
    rec.update(status="failed", error=r.error, bytes=None, sha256=None)
