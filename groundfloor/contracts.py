"""The one definition of the files stages hand each other: artifacts/<model>/manifest.json
(export) and reports/<model>/bench.json (bench). Writers check what they write against it,
tests check fixtures against it, and docs/CONTRACTS.md shows it (regenerated from here:
`python -m groundfloor.contracts docs/CONTRACTS.md`; a test fails when the page is stale).

A schema is a dict of key -> field. A field is a type name ("str", "int", "number", "bool",
"list", "dict", "any"; "a|b" for either; a trailing "?" allows null), a nested dict, or a
(field, "what it means") pair. A key ending in "?" may be absent; the key "*" stands for
every key of a mapping (artifact names, runner names, device profiles). Records are open:
keys the schema does not name are allowed, so a stage may add a figure before the schema
describes it, but never drop or retype one the readers rely on.
"""
from __future__ import annotations

import sys

IO = {"name": "str", "dtype": ("str", "numpy spelling: int8, float32, ..."), "shape": "list",
      "scale": "number?", "zero_point": "int?"}

MANIFEST_ARTIFACT = {
    "file": "str", "format": ("str", "tflite | onnx"), "mode": ("str", "float32 | int8 | int16x8 | dynamic_int8 | ..."),
    "status": ("str", "ok | failed | not_applicable"), "error?": ("str?", "null on streaming twins"),
    "quantized?": ("bool", "decided from the file's weight bytes, not from the options"),
    "streaming?": "bool", "bytes?": "int", "sha256?": "str", "seconds?": "number",
    "ops?": "list", "op_counts?": "dict", "weight_bytes_by_dtype?": ("dict", "dtype -> bytes"),
    "io?": {"inputs": ("list", "records {name, dtype, shape, scale, zero_point}"), "outputs": "list"},
    "options?": ("dict", "what made it: converter settings, calibration windows, ..."),
    "tool_versions?": "dict", "cache_key?": "str", "notes?": "list",
    "verified_with?": ("str", "the runtime that ran it once at export: litert | litert (no default "
                              "delegate) | onnxruntime | tflite-micro"),
}

MANIFEST = {
    "schema": "int", "model": "str", "task": ("str", "regression | classification"),
    "created": ("str", "ISO-8601 UTC"), "inputs_key?": "str",
    "tool_versions": ("dict", "distribution -> version | null"),
    "source": {"path": "str", "sha256": "str", "format": "str", "rebuilt_in_tf_keras": "bool",
               "rebuild_max_abs_diff": "number?",
               "rebuild_verified_against?": ("str", "the loaded Keras model | onnxruntime | torch"),
               "rebuild_notes?": ("list", "what an imported model's rebuild did, e.g. h0/c0 inputs fed as zeros"),
               "input_shape": ("list", "[1, T, F]"),
               "output_shape": "list", "params": "int", "lint": "list"},
    "data": {"file": ("str", "data.npz: x_calib, x_eval, y_eval (optional), y_float"), "sha256": "str",
             "calib_samples": "int", "eval_samples": "int"},
    "float_metric": {"name": ("str", "rmse | accuracy"), "value": "number"},
    "artifacts": {"*": MANIFEST_ARTIFACT},
    "streaming?": ("dict", "streaming twins: {status, cache_key, artifacts | reason}"),
}

METRICS = ("dict", "n, rmse, mae, max_abs, l2r, mean_err, std_err, nse, cos (error = reference - "
                   "deployed, undefined -> null); argmax_agreement (cross) and acc, acc_float, "
                   "acc_change (truth) for classifiers; per_step {rmse, max_abs} for sequences")

BENCH_RUNNER = {
    "status": ("str", "ok | error | crashed | timeout | skipped | not_applicable"),
    "error?": "str", "reason?": "str", "runner_kind?": ("str", "host | emulated"), "seconds?": "number",
    "peak_rss_bytes?": "dict",
    "latency_host?": ("dict", "kind measured, unit us, per invoke | step, n, p50, p90, p99, mean, std, min, max"),
    "arena?": ("dict", "tflm: min_arena_bytes, largest_failing_bytes, reported {total_bytes, ...}, cached"),
    "details?": "dict",
    "metrics?": {"cross": METRICS, "truth?": METRICS},
}

BENCH_DEVICE = {
    "latency": ("dict?", "kind estimated: value (us), cycles, method, cost_model, per_op; null when the "
                         "file could not be analysed"),
    "latency_emulated?": ("dict?", "kind emulated: value, instructions, cycles, board, windows"),
    "latency_calibrated?": "dict", "latency_vs_emulated?": "dict",
    "emulated?": ("dict", "the emulated firmware: status, instructions, flash_bytes, ram_bytes, tflm, drift, fit"),
    "fit": {"flash": ("dict?", "need, budget, margin, margin_pct, fits, kind, basis, parts"),
            "ram?": "dict?", "fits": "bool?", "verdict": ("str", "fits | does not fit | unknown")},
}

BENCH_ARTIFACT = {
    "file": "str", "format": "str", "mode": "str", "quantized": ("bool?", "null when not applicable"),
    "streaming": "bool",
    "bytes?": "int?", "sha256?": "str?",
    "status": ("str", "ok (at least one runner ran it) | failed | skipped"), "error": "str", "notes": "list",
    "analysis?": ("dict?", "status, ops, op_types, macs, macs_by_dtype, nonlinear, elementwise, steps"),
    "memory?": ("dict?", "model_bytes, state_bytes, io_bytes, activation_bytes_upper, arena_bytes, "
                        "ram_total_bytes, peak_rss_bytes, weight_bytes_by_dtype"),
    "runners": {"*": BENCH_RUNNER},
    "devices?": {"*": BENCH_DEVICE},
}

BENCH = {
    "schema": "int", "model": "str", "task": ("str", "regression | classification"),
    "created": ("str", "ISO-8601 UTC"), "seconds": ("number", "wall time of the bench"),
    "artifacts_dir": "str", "manifest_sha256": "str", "data_sha256": "str",
    "machine": ("dict", "platform, machine, cpu, cpu_features, int8_dot_product, cores, ram_bytes, python"),
    "tool_versions": "dict",
    "config": ("dict", "warmup, runs, timeout_s, max_samples, reset_state, runners, n_samples"),
    "devices": ("dict", "profile name -> profile fields"),
    "float_reference": {"float_metric": "dict", "truth?": METRICS},
    "artifacts": {"*": BENCH_ARTIFACT},
    "calibration?": ("dict", "profile -> emulated vs estimated latency of the calibration artifact"),
    "streaming?": ("dict", "per_step, agreement, long_stream, errors"),
    "errors": ("list", "one line per artifact/runner problem"),
}

SCHEMAS = {"manifest": MANIFEST, "bench": BENCH}


class ContractBroken(RuntimeError):
    """A stage is about to write a file its readers cannot read: a bug, not bad input."""


_TYPES = {"str": (str,), "int": (int,), "number": (int, float), "bool": (bool,), "list": (list,),
          "dict": (dict,), "any": (object,)}


def _split(field):
    return field if isinstance(field, tuple) else (field, "")


def _type_ok(name: str, value) -> bool:
    nullable = name.endswith("?")
    if value is None:
        return nullable or name.rstrip("?") == "any"
    for t in name.rstrip("?").split("|"):
        if isinstance(value, bool) and t in ("int", "number"):
            continue   # bool is an int in Python, never in these files
        if isinstance(value, _TYPES[t]):
            return True
    return False


def problems(schema: dict, obj, path: str = "") -> list[str]:
    """Every place obj departs from schema, as "path: what is wrong"."""
    if not isinstance(obj, dict):
        return [f"{path or '<top>'}: expected an object, got {type(obj).__name__}"]
    out = []
    for key, field in schema.items():
        field, _ = _split(field)
        if key == "*":
            for name, value in obj.items():
                out += _check(field, value, f"{path}.{name}" if path else name)
            continue
        optional, key = key.endswith("?"), key.rstrip("?")
        here = f"{path}.{key}" if path else key
        if key not in obj:
            if not optional:
                out.append(f"{here}: missing")
            continue
        out += _check(field, obj[key], here)
    return out


def _check(field, value, path) -> list[str]:
    if isinstance(field, dict):
        return problems(field, value, path)
    if not _type_ok(field, value):
        return [f"{path}: expected {field}, got {type(value).__name__}"]
    return []


def require(kind: str, obj) -> None:
    """Raise ContractBroken naming every departure (writers call this before writing)."""
    found = problems(SCHEMAS[kind], obj)
    if found:
        raise ContractBroken(f"{kind} does not follow groundfloor/contracts.py: " + "; ".join(found[:10]))


def render(schema: dict, indent: int = 0) -> list[str]:
    """The schema as the indented layout docs/CONTRACTS.md shows."""
    lines, pad = [], "  " * indent
    for key, field in schema.items():
        field, doc = _split(field)
        name = "<name>" if key == "*" else key.rstrip("?")
        opt = " (optional)" if key.endswith("?") else ""
        if isinstance(field, dict):
            lines.append(f"{pad}{name}:{opt}{'  # ' + doc if doc else ''}")
            lines += render(field, indent + 1)
        else:
            lines.append(f"{pad}{name}: {field}{opt}{'  # ' + doc if doc else ''}")
    return lines


BEGIN, END = "<!-- schema:{kind} (generated from groundfloor/contracts.py) -->", "<!-- end schema -->"


def docs_with_schemas(text: str) -> str:
    """text with every generated schema block replaced by the current schema."""
    for kind, schema in SCHEMAS.items():
        begin = BEGIN.format(kind=kind)
        if begin not in text:
            continue
        head, rest = text.split(begin, 1)
        _, tail = rest.split(END, 1)
        block = "\n```\n" + "\n".join(render(schema)) + "\n```\n"
        text = head + begin + block + END + tail
    return text


if __name__ == "__main__":
    from pathlib import Path
    from groundfloor.fileio import write_text
    page = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/CONTRACTS.md")
    write_text(page, docs_with_schemas(page.read_text()))
    print(f"{page}: schemas regenerated")
