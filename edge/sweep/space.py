"""The search space of `edge sweep` (TOML): what data, which grid, which quantization candidates,
which devices and budgets. Unknown keys and empty ranges are errors (one line naming the file),
so a typo never silently shrinks the grid or turns a budget off.

    space = load_space("edge/tasks/sweep_example.toml")
    space.variants()   # [{"cell": "lstm", "units": 8, ...}, ...] in a stable order
"""
from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import KINDS, check_model_name, refuse_unknown_keys
from groundfloor.errors import BadInput

TOP_KEYS = {"name", "data", "space", "quantize", "devices", "budgets", "bench"}
DATA_KEYS = {"task", "path", "kind"}
CELLS = {"lstm": "LSTM", "gru": "GRU"}   # space value -> tf-keras layer class
# grid axes: (type check, what a value must be); every axis is a list, a scalar or a range table
AXES = {
    "cell": (lambda v: v in CELLS, f"one of {', '.join(CELLS)}"),
    "units": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024, "an integer 1..1024"),
    "layers": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8, "an integer 1..8"),
    "window": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 4096, "an integer 2..4096"),
    "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1, "a number in [0, 1)"),
    "epochs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1000, "an integer 1..1000"),
}
AXIS_DEFAULTS = {"cell": ["lstm"], "layers": [1], "dropout": [0.0]}   # units, window, epochs are required
SPACE_KEYS = set(AXES) | {"seed", "batch_size", "learning_rate"}
RANGE_KEYS = {"from", "to", "step"}
QUANTIZE_KEYS = {"candidates"}
DEVICES_KEYS = {"profiles"}
# budgets: [budgets] for every device, [budgets.<device>] for one; the metric budgets apply to the task kind
BUDGET_KEYS = {"max_latency_ms", "max_ram_kib", "max_flash_kib", "max_rmse", "min_accuracy"}
METRIC_BUDGET = {"regression": "max_rmse", "classification": "min_accuracy"}
BENCH_KEYS = {"runs", "max_samples", "emulated", "timeout"}
BENCH_DEFAULTS = {"runs": 50, "max_samples": 200, "emulated": True, "timeout": 300.0}
BUDGETED = "budgeted"   # the `edge quantize` search's choice, a candidate like the export's artifacts


@dataclass
class Space:
    path: Path
    name: str
    task: str | None               # a reference task, or None for the user's data
    data: Path | None
    kind: str
    axes: dict                     # axis -> list of values
    training: dict                 # seed, batch_size, learning_rate
    candidates: list               # artifact names (export.pipeline.ARTIFACTS) and/or "budgeted"
    devices: list                  # profile names or .toml paths
    device_names: list             # the profiles' names (what bench.json and the budgets use)
    budgets: dict                  # device -> {key: limit} (the [budgets] defaults merged in)
    bench: dict = field(default_factory=lambda: dict(BENCH_DEFAULTS))

    def variants(self) -> list[dict]:
        """Every grid point as a dict of axis values plus the training settings; stable order."""
        names = list(AXES)
        return [dict(zip(names, combo), **self.training)
                for combo in itertools.product(*(self.axes[a] for a in names))]


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BadInput(path, "search-space file not found") from None
    except UnicodeDecodeError as e:
        raise BadInput(path, f"not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(path, f"invalid TOML: {e}") from None


def _table(path, raw, key, allowed) -> dict:
    t = raw.get(key, {})
    if not isinstance(t, dict):
        raise BadInput(path, f"'{key}' must be a table ([{key}])")
    refuse_unknown_keys(path, t, allowed, f"{key}.")
    return t


def _expand_range(path, axis, r: dict) -> list:
    refuse_unknown_keys(path, r, RANGE_KEYS, f"space.{axis}.")
    missing = [k for k in ("from", "to") if k not in r]
    if missing:
        raise BadInput(path, f"space.{axis}: a range needs 'from' and 'to' (missing '{missing[0]}')")
    start, stop, step = r["from"], r["to"], r.get("step", 1)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop, step)) or step <= 0:
        raise BadInput(path, f"space.{axis}: 'from', 'to' and a positive 'step' must be numbers")
    out, v = [], start
    while v <= stop + 1e-12:
        out.append(round(v, 10) if isinstance(v, float) else v)
        v += step
    return out


def _axis(path, axis, value) -> list:
    values = _expand_range(path, axis, value) if isinstance(value, dict) else \
        (value if isinstance(value, list) else [value])
    if not values:
        raise BadInput(path, f"space.{axis}: empty range (no values to try)")
    ok, what = AXES[axis]
    for v in values:
        if not ok(v):
            raise BadInput(path, f"space.{axis}: {v!r} is not {what}")
    if len(set(map(repr, values))) != len(values):
        raise BadInput(path, f"space.{axis}: a value is listed twice ({values})")
    return [float(v) for v in values] if axis == "dropout" else values


def _data(path, raw, base):
    d = _table(path, raw, "data", DATA_KEYS)
    if ("task" in d) == ("path" in d):
        raise BadInput(path, "[data] needs either 'task' (a reference task) or 'path' (your .npz / .csv)")
    if "task" in d:
        from edge.tasks import TASKS
        if d["task"] not in TASKS:
            raise BadInput(path, f"data.task: unknown reference task '{d['task']}'; known: {', '.join(TASKS)}")
        if "kind" in d and d["kind"] != TASKS[d["task"]].kind:
            raise BadInput(path, f"data.kind: the task '{d['task']}' is {TASKS[d['task']].kind}")
        return d["task"], None, TASKS[d["task"]].kind
    kind = d.get("kind", "regression")
    if kind not in KINDS:
        raise BadInput(path, f"data.kind must be one of {', '.join(sorted(KINDS))}, not '{kind}'")
    data = Path(d["path"]) if Path(d["path"]).is_absolute() else base / d["path"]
    if data.suffix not in (".npz", ".csv"):
        raise BadInput(path, f"data.path: '{d['path']}' must be a .npz or .csv file (as `edge export --data`)")
    return None, data, kind


def _candidates(path, raw) -> list:
    from export.pipeline import ARTIFACTS
    q = _table(path, raw, "quantize", QUANTIZE_KEYS)
    cands = q.get("candidates", ["tflite_int8"])
    known = list(ARTIFACTS) + [BUDGETED]
    if not isinstance(cands, list) or not cands:
        raise BadInput(path, "quantize.candidates: empty range (list at least one artifact)")
    for c in cands:
        if c not in known:
            raise BadInput(path, f"quantize.candidates: unknown candidate {c!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(cands))


def _devices(path, raw, base) -> list:
    d = _table(path, raw, "devices", DEVICES_KEYS)
    profiles = d.get("profiles", ["cortex_m4f"])
    if not isinstance(profiles, list) or not profiles or not all(isinstance(p, str) for p in profiles):
        raise BadInput(path, "devices.profiles: empty range (list at least one profile name or .toml file)")
    out = [str(base / p) if p.endswith(".toml") and not Path(p).is_absolute() else p for p in profiles]
    from firmware_sim.profiles import load_profiles
    # an unknown profile is bad input now, not after an hour of training; a .toml names itself
    return out, [p.name for p in load_profiles(out)]


def _budget_values(path, table, where, kind) -> dict:
    out = {}
    for k, v in table.items():
        if k not in BUDGET_KEYS:
            raise BadInput(path, f"unknown key '{where}{k}' (allowed: {', '.join(sorted(BUDGET_KEYS))}, "
                                 "or a device table)")
        if k in METRIC_BUDGET.values() and k != METRIC_BUDGET[kind]:
            raise BadInput(path, f"{where}{k}: a {kind} task is judged with '{METRIC_BUDGET[kind]}'")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise BadInput(path, f"{where}{k} must be a number >= 0, not {v!r}")
        out[k] = float(v)
    return out


def _budgets(path, raw, kind, names) -> dict:
    b = raw.get("budgets", {})
    if not isinstance(b, dict):
        raise BadInput(path, "'budgets' must be a table ([budgets])")
    common = _budget_values(path, {k: v for k, v in b.items() if not isinstance(v, dict)}, "budgets.", kind)
    per = {}
    for dev, t in b.items():
        if not isinstance(t, dict):
            continue
        if dev not in names:
            raise BadInput(path, f"budgets.{dev}: not one of the sweep's devices ({', '.join(names)})")
        per[dev] = _budget_values(path, t, f"budgets.{dev}.", kind)
    return {d: {**common, **per.get(d, {})} for d in names}


def _bench(path, raw) -> dict:
    b = _table(path, raw, "bench", BENCH_KEYS)
    out = dict(BENCH_DEFAULTS, **b)
    for k in ("runs", "max_samples"):
        if isinstance(out[k], bool) or not isinstance(out[k], int) or out[k] < 1:
            raise BadInput(path, f"bench.{k} must be an integer >= 1")
    if not isinstance(out["emulated"], bool):
        raise BadInput(path, "bench.emulated must be true or false")
    if isinstance(out["timeout"], bool) or not isinstance(out["timeout"], (int, float)) or out["timeout"] <= 0:
        raise BadInput(path, "bench.timeout must be a number of seconds > 0")
    return out


def _training(path, s) -> dict:
    out = {"seed": s.get("seed", 1234), "batch_size": s.get("batch_size", 64),
           "learning_rate": float(s.get("learning_rate", 3e-3))}
    for k in ("seed", "batch_size"):
        if isinstance(out[k], bool) or not isinstance(out[k], int) or out[k] < (0 if k == "seed" else 1):
            raise BadInput(path, f"space.{k} must be an integer (one value, not a range)")
    if not 0 < out["learning_rate"] < 1:
        raise BadInput(path, "space.learning_rate must be a number in (0, 1)")
    return out


def load_space(path, data=None, kind=None, task=None) -> Space:
    """Parse and validate a search-space file; data/kind/task override its [data] table (CLI)."""
    path = Path(path)
    raw = _read_toml(path)
    refuse_unknown_keys(path, raw, TOP_KEYS)
    base = path.parent
    if data or task:
        raw = dict(raw, data={"task": task} if task else {"path": str(Path(data).resolve()),
                                                          "kind": kind or "regression"})
    ref_task, data_path, task_kind = _data(path, raw, base)
    s = _table(path, raw, "space", SPACE_KEYS)
    for required in ("units", "window", "epochs"):
        if required not in s:
            raise BadInput(path, f"space.{required} is required (a list, a value or {{from, to, step}})")
    axes = {a: _axis(path, a, s.get(a, AXIS_DEFAULTS.get(a))) for a in AXES}
    devices, device_names = _devices(path, raw, base)
    name = raw.get("name", path.stem)
    check_model_name(name, path)
    return Space(path=path, name=name, task=ref_task, data=data_path, kind=task_kind, axes=axes,
                 training=_training(path, s), candidates=_candidates(path, raw), devices=devices,
                 device_names=device_names, budgets=_budgets(path, raw, task_kind, device_names),
                 bench=_bench(path, raw))


# --------------------------------------------------------------------------- writing a space

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):   # a range {from, to, step}
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def space_text(name: str, space: dict, candidates: list, profiles: list, data=None, budgets=None,
               bench=None) -> str:
    """A search-space file's text (what load_space reads) from plain values: the benchmark's and the
    tests' spaces. data: the [data] table (default: the seattle_temp task); budgets: {key: value} for
    every device and {device: {key: value}} for one."""
    tables = [("data", data or {"task": "seattle_temp"}), ("space", space), ("quantize", {"candidates": candidates}),
              ("devices", {"profiles": profiles})]
    common = {k: v for k, v in (budgets or {}).items() if not isinstance(v, dict)}
    tables += [("budgets", common)] if common else []
    tables += [(f"budgets.{d}", t) for d, t in (budgets or {}).items() if isinstance(t, dict)]
    if bench:
        tables.append(("bench", bench))
    lines = [f"name = {_toml_value(name)}"]
    for title, body in tables:
        lines.append(f"[{title}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"
