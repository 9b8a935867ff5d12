"""Budgets: the [budgets] keys of the config, their parsing and merging, and how each one is
measured on bench.json and judged. The one place budget semantics live (`edge check` gates on
them, `edge report` shows them and judges every variant by them).

Budgets live in the pipeline config (see the [budgets] comments in edge/default.toml):

    [budgets.default]               every model, every device
    [budgets.default.<device>]      every model, one device
    [budgets.<model>]               one model, every device
    [budgets.<model>.<device>]      one model, one device

More specific sections override less specific ones key by key (a drift budget per metric).
Keys:
    max_accuracy_drop   classifiers: accuracy points lost against the float Keras model
                        (100 * (acc_float - acc)), worst runner
    max_rmse_increase   regressors: relative increase of the task RMSE against the float Keras
                        model ((rmse - rmse_float) / rmse_float; 0.1 = +10 %), worst runner
    max_drift           {metric = "rmse", value = 0.5}: output drift against the float Keras
                        outputs, in the model's output units, worst runner
    max_drift_<metric>  the same, one key per metric (rmse, mae, max_abs, l2r, std_err,
                        argmax_disagreement)
    max_latency_ms      device latency in milliseconds per window (emulated when an emulating
                        runner measured it, else the estimate)
    max_ram_kib         RAM need on the device in KiB (the fit's need: TFLite Micro arena or emulated
                        firmware, plus the profile's runtime reserve)
    max_flash_kib       flash need on the device in KiB (model file or firmware image, plus the reserve)
    must_fit            flash and RAM fit verdict of the device is "fits"
    artifacts           which artifacts the budgets of this section apply to: names or
                        fnmatch patterns, or "quantized" / "all" (default ["quantized"])
A numeric budget (or max_drift) set to false switches an inherited budget off.
Accuracy and drift do not depend on the device, so they are refused in device sections.
Any unknown key, wrong type or wrong unit suffix is a BadInput naming the key (exit 2).
"""
from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge.config import refuse_unknown_keys
from edge.policy import is_quantized, ran_on
from groundfloor.errors import BadInput

DRIFT_METRICS = ("rmse", "mae", "max_abs", "l2r", "std_err", "argmax_disagreement")
SELECTOR_WORDS = ("quantized", "all")


@dataclass(frozen=True)
class Key:
    """One budget key: the Budget attribute it sets, the unit of the figure it is judged on,
    whether it may be set per device, and (judged keys) the task it applies to."""
    attr: str
    unit: str
    device_level: bool
    hint: str = ""                                     # the unit, in a type error
    applies: Callable[[str], bool] = lambda task: True


# In this order in the report's budget summary and in the list of allowed keys.
KEYS = {
    "max_accuracy_drop": Key("accuracy_drop", "points", False, "accuracy points, e.g. 2.0 = two points",
                             lambda task: task == "classification"),
    "max_rmse_increase": Key("rmse_increase", "relative", False, "relative increase, e.g. 0.1 = +10 %",
                             lambda task: task != "classification"),
    "max_drift": Key("drift", "output units", False),
    "max_latency_ms": Key("latency_ms", "ms", True, "milliseconds"),
    "max_ram_kib": Key("ram_kib", "KiB", True, "KiB, 1 KiB = 1024 bytes"),
    "max_flash_kib": Key("flash_kib", "KiB", True, "KiB, 1 KiB = 1024 bytes"),
    "must_fit": Key("must_fit", "", True),
    "artifacts": Key("artifacts", "", True),
}
KEY_LIST = ["max_accuracy_drop", "max_rmse_increase", "max_drift", "max_drift_<metric>", "max_latency_ms",
            "max_ram_kib", "max_flash_kib", "must_fit", "artifacts"]
DRIFT_HINT = "the model's output units"


def drift_unit(metric: str) -> str:
    return "fraction" if metric == "argmax_disagreement" else KEYS["max_drift"].unit


# --------------------------------------------------------------------------- merged budgets

@dataclass
class Budget:
    """The effective budgets for one model (and optionally one device)."""
    accuracy_drop: float | None = None
    rmse_increase: float | None = None
    drift: dict = field(default_factory=dict)          # metric -> value
    latency_ms: float | None = None
    ram_kib: float | None = None
    flash_kib: float | None = None
    must_fit: bool = False
    artifacts: list = field(default_factory=lambda: ["quantized"])
    origin: dict = field(default_factory=dict)         # budget name -> config section it came from

    def as_dict(self) -> dict:
        """The budgets by their config key names (report.json "budgets")."""
        out = {}
        for key, k in KEYS.items():
            v = getattr(self, k.attr)
            out[key] = dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
        return out


@dataclass
class Budgets:
    """All [budgets] sections of a config, validated. `for_model(m)` / `for_device(m, d)`."""
    sections: dict           # (model | "default", device | None) -> parsed dict of settings
    path: str | None = None

    def _merged(self, levels) -> Budget:
        b = Budget()
        for level in levels:
            where = _section_name(*level)
            for key, value in (self.sections.get(level) or {}).items():
                if key == "drift":
                    _merge_drift(b, value, where)
                    continue
                attr = KEYS[key].attr
                setattr(b, attr, None if value is False and attr != "must_fit" else value)
                b.origin[key] = where
        return b

    def for_model(self, model) -> Budget:
        """Device-independent budgets (accuracy, drift) and the model-level artifact selection."""
        return self._merged([("default", None), (model, None)])

    def for_device(self, model, device) -> Budget:
        """Every budget of a model on one device (device sections override)."""
        return self._merged([("default", None), ("default", device), (model, None), (model, device)])


def _merge_drift(b: Budget, value, where):
    if value is False:
        b.drift = {}
        b.origin["max_drift"] = where
        return
    for metric, v in value.items():
        if v is False:
            b.drift.pop(metric, None)
        else:
            b.drift[metric] = v
        b.origin[f"max_drift_{metric}"] = where


def _section_name(model, device=None):
    return f"budgets.{model}" + (f".{device}" if device else "")


# --------------------------------------------------------------------------- parsing

def known_devices(config) -> set:
    """Built-in profile names plus the names of the config's profile files."""
    from firmware_sim.profiles import _looks_like_path, builtin_names, load_profile
    names = set(builtin_names())
    for spec in getattr(config, "devices", []) or []:
        if _looks_like_path(spec):
            try:
                names.add(load_profile(spec).name)
            except Exception:
                names.add(Path(spec).stem)
        else:
            names.add(spec)
    return names


def parse_budgets(raw, path=None, models=(), devices=()) -> Budgets:
    """Validate the raw [budgets] table of a config. models: the config's model names;
    devices: every device name a section may be named after."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadInput(path, "budgets must be a table ([budgets.default], [budgets.<model>], ...)")
    models, devices = set(models), set(devices)
    sections = {}
    for top, body in raw.items():
        where = f"budgets.{top}"
        if top != "default" and top not in models:
            raise BadInput(path, f"unknown key '{where}': not 'default' and no model of that name in the config "
                                 f"(models: {', '.join(sorted(models)) or 'none'})")
        if not isinstance(body, dict):
            raise BadInput(path, f"'{where}' must be a table of budgets")
        settings = {}
        for key, value in body.items():
            if isinstance(value, dict) and key != "max_drift":
                sections[(top, key)] = _device_section(where, key, value, path, devices)
                continue
            _parse_key(where, key, value, settings, path, device_level=False)
        sections[(top, None)] = settings
    return Budgets(sections=sections, path=None if path is None else str(path))


def _device_section(where, key, value, path, devices) -> dict:
    if key not in devices:
        if key in KEYS or key.startswith(("max_", "must_")):
            raise BadInput(path, f"'{where}.{key}' must not be a table")
        raise BadInput(path, f"unknown key '{where}.{key}': not a budget key "
                             f"({', '.join(KEY_LIST)}) and no device of that name "
                             f"(devices: {', '.join(sorted(devices))})")
    settings = {}
    for dkey, dvalue in value.items():
        _parse_key(f"{where}.{key}", dkey, dvalue, settings, path, device_level=True)
    return settings


def _number(full, value, path, unit):
    if value is False:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        raise BadInput(path, f"'{full}' must be a number ({unit}) or false, not {type(value).__name__} {shown}")
    if not math.isfinite(value) or value < 0:
        raise BadInput(path, f"'{full}' must be a finite number >= 0, not {value}")
    return float(value)


def _parse_bool(full, key, value, out, path):
    if not isinstance(value, bool):
        raise BadInput(path, f"'{full}' must be true or false, not {type(value).__name__} {value!r}")
    out[key] = value


def _parse_artifacts(full, key, value, out, path):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BadInput(path, f"'{full}' must be a non-empty list of artifact names or patterns "
                             f"(or \"quantized\" / \"all\")")
    out[key] = list(value)


def _parse_max_drift(full, key, value, out, path):
    drift = out.setdefault("drift", {})
    if value is False:
        out["drift"] = False
        return
    if not isinstance(value, dict):
        raise BadInput(path, f"'{full}' must be a table like {{metric = \"rmse\", value = 0.5}} or false, "
                             f"not {type(value).__name__} {value!r}")
    refuse_unknown_keys(path, value, ("metric", "value"), f"{full}.")
    for k in ("metric", "value"):
        if k not in value:
            raise BadInput(path, f"'{full}' needs '{k}' (e.g. {{metric = \"rmse\", value = 0.5}})")
    metric = value["metric"]
    if metric not in DRIFT_METRICS:
        raise BadInput(path, f"'{full}.metric': unknown drift metric {metric!r} "
                             f"(known: {', '.join(DRIFT_METRICS)})")
    drift[metric] = _number(f"{full}.value", value["value"], path, DRIFT_HINT)


def _parse_drift_metric(full, key, value, out, path):
    metric = key[len("max_drift_"):]
    if metric not in DRIFT_METRICS:
        base = next((m for m in sorted(DRIFT_METRICS, key=len, reverse=True) if metric.startswith(m + "_")), None)
        if base:
            raise BadInput(path, f"'{full}': wrong unit suffix '{metric[len(base):]}'; drift is in the "
                                 f"model's output units, write max_drift_{base}")
        raise BadInput(path, f"unknown key '{full}': unknown drift metric '{metric}' "
                             f"(known: {', '.join(DRIFT_METRICS)})")
    if isinstance(out.get("drift"), dict) or "drift" not in out:
        out.setdefault("drift", {})[metric] = _number(full, value, path, DRIFT_HINT)
    else:  # max_drift = false in the same section: the explicit key wins
        out["drift"] = {metric: _number(full, value, path, DRIFT_HINT)}


def _wrong_suffix(message):
    def refuse(full, key, value, out, path):
        raise BadInput(path, f"'{full}': wrong unit suffix; {message}")
    return refuse


def _parse_number(full, key, value, out, path):
    out[key] = _number(full, value, path, KEYS[key].hint)


# Exact keys first, then the patterns in order.
PARSERS = {"max_accuracy_drop": _parse_number, "max_rmse_increase": _parse_number, "max_latency_ms": _parse_number,
           "max_ram_kib": _parse_number, "max_flash_kib": _parse_number, "must_fit": _parse_bool,
           "artifacts": _parse_artifacts, "max_drift": _parse_max_drift}
PATTERNS = [
    (r"^max_drift_", _parse_drift_metric),
    (r"^max_latency(_|$)", _wrong_suffix("device latency budgets are in milliseconds, write max_latency_ms")),
    (r"^max_(ram|flash)(_|$)", _wrong_suffix("RAM and flash budgets are in KiB, write max_ram_kib or max_flash_kib")),
    (r"^max_accuracy_drop_", _wrong_suffix("the accuracy drop is in percentage points without a suffix, "
                                           "write max_accuracy_drop")),
    (r"^max_rmse_increase_", _wrong_suffix("the RMSE increase is relative (0.1 = +10 %) without a suffix, "
                                           "write max_rmse_increase")),
]


def _parse_key(where, key, value, out, path, device_level):
    full = f"{where}.{key}"
    if device_level and (key in KEYS and not KEYS[key].device_level
                         or key.startswith(("max_drift", "max_accuracy", "max_rmse"))):
        raise BadInput(path, f"'{full}': accuracy and drift do not depend on the device; "
                             f"set it in [{where.rsplit('.', 1)[0]}]")
    parse = PARSERS.get(key) or next((f for pat, f in PATTERNS if re.match(pat, key)), None)
    if parse is None:
        raise BadInput(path, f"unknown key '{full}' (allowed: {', '.join(KEY_LIST)})")
    parse(full, key, value, out, path)


def budgets_from_config(config, extra_devices=()) -> Budgets:
    return parse_budgets(getattr(config, "budgets", {}) or {}, getattr(config, "path", None),
                         models=list(getattr(config, "models", {}) or {}),
                         devices=known_devices(config) | set(extra_devices))


# --------------------------------------------------------------------------- measuring

def _ok_runners(art):
    return {n: r for n, r in (art.get("runners") or {}).items() if r.get("status") == "ok" and r.get("metrics")}


def _metrics(rr, part):
    """One part of a runner's metrics: "truth" (against ground truth) or "cross" (against float Keras)."""
    return (rr["metrics"] or {}).get(part) or {}


def _worst(values: dict):
    """(worst value, runner) over {runner: value | None}; (None, None) when none is there."""
    worst, who = None, None
    for rn, v in values.items():
        if v is not None and (worst is None or v > worst):
            worst, who = v, rn
    return worst, who


def _worst_runner(runners, part: str, figure: Callable, missing: str):
    """(the worst figure(metrics part) over the runners, "worst runner: <name>"), or (None, missing)
    when no runner has the figure (figure returns None)."""
    worst, who = _worst({rn: figure(_metrics(rr, part)) for rn, rr in runners.items()})
    return (worst, f"worst runner: {who}") if worst is not None else (None, missing)


def _accuracy_drop(runners, bench):
    def drop(t):
        known = t.get("acc") is not None and t.get("acc_float") is not None
        return 100.0 * (t["acc_float"] - t["acc"]) if known else None
    return _worst_runner(runners, "truth", drop, "no ground truth labels")


def _rmse_increase(runners, bench):
    ref = ((bench.get("float_reference") or {}).get("truth") or {}).get("rmse")
    if not ref:
        return None, "no float reference RMSE (no ground truth)"
    pairs = {}
    for rn, rr in runners.items():
        truth = _metrics(rr, "truth")
        if truth.get("rmse") is not None:
            pairs[rn] = (truth["rmse"], truth.get("rmse_float") or ref)  # the float model on the same windows
    worst, who = _worst({rn: (r - base) / base for rn, (r, base) in pairs.items()})
    if worst is None:
        return None, "no ground truth"
    r, base = pairs[who]
    return worst, f"worst runner: {who}; task RMSE {fmt(r)} vs float {fmt(base)} on the same windows"


def _drift(metric, runners):
    def value(cross):
        if metric == "argmax_disagreement":
            a = cross.get("argmax_agreement")
            return None if a is None else 1.0 - a
        return cross.get(metric)
    return _worst_runner(runners, "cross", value, f"no '{metric}' drift figure")


def _latency(d):
    emu = d.get("latency_emulated") or {}
    est = d.get("latency") or {}
    if emu.get("value") is not None:
        return emu["value"] / 1000.0, "emulated"
    if est.get("value") is not None:
        return est["value"] / 1000.0, "estimated"
    return None, "no device latency"


def _need_kib(part):
    def need(d):
        fig = ((d.get("fit") or {}).get(part) or {})
        if fig.get("need") is None:
            return None, f"no {part} need in the fit"
        return fig["need"] / 1024.0, f"{part} need {fig['need']:,} B ({fig.get('kind', 'unknown')})"
    return need


def _fit(d):
    fit = d.get("fit") or {}
    return (1.0 if fit.get("fits") is True else 0.0), fit.get("verdict", "unknown")


MODEL_MEASURES = {"max_accuracy_drop": _accuracy_drop, "max_rmse_increase": _rmse_increase}
DEVICE_MEASURES = {"max_latency_ms": _latency, "max_ram_kib": _need_kib("ram"), "max_flash_kib": _need_kib("flash"),
                   "must_fit": _fit}


CANNOT_RUN = "the device cannot run it"


def measure(budget_key, art, bench, device=None):
    """(value, detail) of what a budget is judged on, or (None, why) when it cannot be measured."""
    if art.get("status") != "ok":
        return None, f"artifact did not run: {art.get('status')}: {art.get('error') or 'no reason given'}"
    if budget_key in MODEL_MEASURES or budget_key.startswith("max_drift_"):
        runners = _ok_runners(art)
        if not runners:
            return None, "no runner produced metrics"
        if budget_key in MODEL_MEASURES:
            return MODEL_MEASURES[budget_key](runners, bench)
        return _drift(budget_key[len("max_drift_"):], runners)
    if budget_key not in DEVICE_MEASURES:
        raise KeyError(budget_key)
    d = (art.get("devices") or {}).get(device) if device else None
    if d is None:
        return None, f"no results for device {device}"
    runs, why = ran_on(art, bench, device)
    if not runs:
        return None, f"{CANNOT_RUN}: {why}"
    return DEVICE_MEASURES[budget_key](d)


def fmt(v, key=""):
    """A judged figure as `edge check` prints it."""
    if v is None:
        return "n/a"
    if key == "must_fit":
        return "fits" if v else "no"
    if not isinstance(v, float):
        return str(v)
    if abs(v) >= 100:
        return f"{v:,.1f}"
    if abs(v) >= 0.01:
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return f"{v:.3g}" if v else "0"


# --------------------------------------------------------------------------- judging

@dataclass
class Row:
    model: str
    artifact: str
    device: str | None
    budget: str
    limit: object
    measured: float | None
    unit: str
    status: str               # "pass" | "fail" | "skip"
    detail: str = ""
    origin: str = ""

    @property
    def name(self):
        return self.budget + (f" @ {self.device}" if self.device else "")

    def as_dict(self):
        return {"model": self.model, "artifact": self.artifact, "device": self.device, "budget": self.budget,
                "limit": self.limit, "measured": self.measured, "unit": self.unit, "status": self.status,
                "detail": self.detail, "origin": self.origin}


def _judge(model, name, art, bench, key, limit, unit, device, origin):
    value, detail = measure(key, art, bench, device)
    if value is None and detail.startswith(CANNOT_RUN):   # a figure for a file the device cannot run
        return Row(model, name, device, key, limit, None, unit, "fail", detail, origin)
    if key == "must_fit":
        if art.get("status") != "ok" and value is None:
            return Row(model, name, device, key, True, None, unit, "fail", detail, origin)
        return Row(model, name, device, key, True, value, unit, "pass" if value == 1.0 else "fail",
                   detail, origin)
    if value is None:
        # an artifact that did not run fails its budgets; a figure the data cannot give is skipped
        status = "fail" if art.get("status") != "ok" or detail == "no runner produced metrics" else "skip"
        return Row(model, name, device, key, limit, None, unit, status, detail, origin)
    ok = value <= limit + 1e-12
    return Row(model, name, device, key, limit, value, unit, "pass" if ok else "fail", detail, origin)


def _select(art_names, patterns, quantized_of):
    chosen = []
    for name in art_names:
        for pat in patterns:
            if (pat == "all" or (pat == "quantized" and quantized_of(name))
                    or fnmatch.fnmatchcase(name, pat)):
                chosen.append(name)
                break
    missing = [p for p in patterns if p not in SELECTOR_WORDS and not any(ch in p for ch in "*?[")
               and p not in art_names]
    return chosen, missing


def _budgets_of(b: Budget, task: str, device_level: bool):
    """(key, limit, unit) of every budget set in b that applies to the task, in judging order."""
    out = []
    for key, k in KEYS.items():
        if k.device_level != device_level or key == "artifacts":
            continue
        if key == "max_drift":              # one budget per metric
            out += [(f"max_drift_{m}", v, drift_unit(m)) for m, v in sorted(b.drift.items())
                    if m != "argmax_disagreement" or task == "classification"]
            continue
        limit = getattr(b, k.attr)          # None: not set; must_fit False: not required
        if limit is not None and limit is not False and k.applies(task):
            out.append((key, True if key == "must_fit" else limit, k.unit))
    return out


def evaluate_model(model, bench, manifest, budgets: Budgets, devices, all_artifacts=False) -> list[Row]:
    """Judge one model's bench results against its budgets. all_artifacts: ignore the `artifacts`
    selection (the report uses this to judge every variant by the same budget values)."""
    task = bench.get("task") or (manifest or {}).get("task") or "regression"
    arts = bench["artifacts"]
    marts = (manifest or {}).get("artifacts") or {}
    quant = {n: is_quantized(a, marts.get(n)) for n, a in arts.items()}
    missing_art = {"status": "missing", "error": "not in the bench results (not exported or not benched)"}
    rows = []
    levels = [(None, budgets.for_model(model))] + [(dev, budgets.for_device(model, dev)) for dev in devices]
    for dev, b in levels:
        chosen, missing = _select(list(arts), ["all"] if all_artifacts else b.artifacts, quant.get)
        for name in chosen + ([] if all_artifacts else missing):
            art = arts.get(name, missing_art)
            for key, limit, unit in _budgets_of(b, task, device_level=dev is not None):
                origin = b.origin.get(key, "")
                rows.append(_judge(model, name, art, bench, key, limit, unit, dev, origin))
    order = {n: i for i, n in enumerate(arts)}
    dev_order = {d: i for i, d in enumerate(devices)}
    rows.sort(key=lambda r: (order.get(r.artifact, len(order)), r.device is not None, dev_order.get(r.device, -1)))
    return rows
