"""`edge check`: the CI gate. Budgets from the config, judged against reports/<model>/bench.json.

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
    must_fit            flash and RAM fit verdict of the device is "fits"
    artifacts           which artifacts the budgets of this section apply to: names or
                        fnmatch patterns, or "quantized" / "all" (default ["quantized"])
A numeric budget (or max_drift) set to false switches an inherited budget off.
Accuracy and drift do not depend on the device, so they are refused in device sections.

Any unknown key, wrong type or wrong unit suffix is a BadInput naming the key (exit 2).
Exceeded budgets print as FAIL and make `edge check` exit 1; a JUnit XML file (one testcase
per model x artifact x budget) goes to reports/check.xml (--junit).
"""
from __future__ import annotations

import fnmatch
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from groundfloor.errors import BadInput

DRIFT_METRICS = ("rmse", "mae", "max_abs", "l2r", "std_err", "argmax_disagreement")
MODEL_LEVEL_KEYS = ("max_accuracy_drop", "max_rmse_increase", "max_drift")   # + max_drift_<metric>
DEVICE_KEYS = ("max_latency_ms", "must_fit", "artifacts")
SELECTOR_WORDS = ("quantized", "all")
UNITS = {"max_accuracy_drop": "points", "max_rmse_increase": "relative", "max_latency_ms": "ms",
         "must_fit": "", "drift": "output units"}


# --------------------------------------------------------------------------- budget parsing

@dataclass
class Budget:
    """The effective budgets for one model (and optionally one device)."""
    accuracy_drop: float | None = None
    rmse_increase: float | None = None
    drift: dict = field(default_factory=dict)          # metric -> value
    latency_ms: float | None = None
    must_fit: bool = False
    artifacts: list = field(default_factory=lambda: ["quantized"])
    origin: dict = field(default_factory=dict)         # budget name -> config section it came from

    def is_empty(self) -> bool:
        return (self.accuracy_drop is None and self.rmse_increase is None and not self.drift
                and self.latency_ms is None and not self.must_fit)


@dataclass
class Budgets:
    """All [budgets] sections of a config, validated. `for_model(m)` / `for_device(m, d)`."""
    sections: dict           # (model | "default", device | None) -> parsed dict of settings
    path: str | None = None

    def _merged(self, levels) -> Budget:
        b = Budget()
        for level in levels:
            sec = self.sections.get(level)
            if not sec:
                continue
            where = _section_name(*level)
            for key, value in sec.items():
                if key == "drift":
                    if value is False:
                        b.drift = {}
                        b.origin["max_drift"] = where
                        continue
                    for metric, v in value.items():
                        if v is False:
                            b.drift.pop(metric, None)
                        else:
                            b.drift[metric] = v
                        b.origin[f"max_drift_{metric}"] = where
                    continue
                attr = {"max_accuracy_drop": "accuracy_drop", "max_rmse_increase": "rmse_increase",
                        "max_latency_ms": "latency_ms", "must_fit": "must_fit", "artifacts": "artifacts"}[key]
                setattr(b, attr, None if value is False and attr != "must_fit" else value)
                b.origin[key] = where
        return b

    def for_model(self, model) -> Budget:
        """Device-independent budgets (accuracy, drift) and the model-level artifact selection."""
        return self._merged([("default", None), (model, None)])

    def for_device(self, model, device) -> Budget:
        """Every budget of a model on one device (device sections override)."""
        return self._merged([("default", None), ("default", device), (model, None), (model, device)])


def _section_name(model, device=None):
    return f"budgets.{model}" + (f".{device}" if device else "")


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
                if key not in devices:
                    if key in _ALL_KEYS or key.startswith(("max_", "must_")):
                        raise BadInput(path, f"'{where}.{key}' must not be a table")
                    raise BadInput(path, f"unknown key '{where}.{key}': not a budget key "
                                         f"({', '.join(_KEY_LIST)}) and no device of that name "
                                         f"(devices: {', '.join(sorted(devices))})")
                dev_settings = {}
                for dkey, dvalue in value.items():
                    _parse_key(f"{where}.{key}", dkey, dvalue, dev_settings, path, device_level=True)
                sections[(top, key)] = dev_settings
                continue
            _parse_key(where, key, value, settings, path, device_level=False)
        sections[(top, None)] = settings
    return Budgets(sections=sections, path=None if path is None else str(path))


_ALL_KEYS = {"max_accuracy_drop", "max_rmse_increase", "max_drift", "max_latency_ms", "must_fit", "artifacts"}
_KEY_LIST = ["max_accuracy_drop", "max_rmse_increase", "max_drift", "max_drift_<metric>", "max_latency_ms",
             "must_fit", "artifacts"]


def _number(full, value, path, unit):
    if value is False:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        raise BadInput(path, f"'{full}' must be a number ({unit}) or false, not {type(value).__name__} {shown}")
    if not math.isfinite(value) or value < 0:
        raise BadInput(path, f"'{full}' must be a finite number >= 0, not {value}")
    return float(value)


def _parse_key(where, key, value, out, path, device_level):
    full = f"{where}.{key}"
    if device_level and (key in MODEL_LEVEL_KEYS or key.startswith(("max_drift", "max_accuracy", "max_rmse"))):
        raise BadInput(path, f"'{full}': accuracy and drift do not depend on the device; "
                             f"set it in [{where.rsplit('.', 1)[0]}]")
    if key == "max_accuracy_drop":
        out[key] = _number(full, value, path, "accuracy points, e.g. 2.0 = two points")
    elif key == "max_rmse_increase":
        out[key] = _number(full, value, path, "relative increase, e.g. 0.1 = +10 %")
    elif key == "max_latency_ms":
        out[key] = _number(full, value, path, "milliseconds")
    elif key == "must_fit":
        if not isinstance(value, bool):
            raise BadInput(path, f"'{full}' must be true or false, not {type(value).__name__} {value!r}")
        out[key] = value
    elif key == "artifacts":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise BadInput(path, f"'{full}' must be a non-empty list of artifact names or patterns "
                                 f"(or \"quantized\" / \"all\")")
        out[key] = list(value)
    elif key == "max_drift":
        drift = out.setdefault("drift", {})
        if value is False:
            out["drift"] = False
            return
        if not isinstance(value, dict):
            raise BadInput(path, f"'{full}' must be a table like {{metric = \"rmse\", value = 0.5}} or false, "
                                 f"not {type(value).__name__} {value!r}")
        bad = set(value) - {"metric", "value"}
        if bad:
            raise BadInput(path, f"unknown key '{full}.{sorted(bad)[0]}' (allowed: metric, value)")
        for k in ("metric", "value"):
            if k not in value:
                raise BadInput(path, f"'{full}' needs '{k}' (e.g. {{metric = \"rmse\", value = 0.5}})")
        metric = value["metric"]
        if metric not in DRIFT_METRICS:
            raise BadInput(path, f"'{full}.metric': unknown drift metric {metric!r} "
                                 f"(known: {', '.join(DRIFT_METRICS)})")
        drift[metric] = _number(f"{full}.value", value["value"], path, "the model's output units")
    elif key.startswith("max_drift_"):
        metric = key[len("max_drift_"):]
        if metric not in DRIFT_METRICS:
            base = next((m for m in sorted(DRIFT_METRICS, key=len, reverse=True) if metric.startswith(m + "_")), None)
            if base:
                raise BadInput(path, f"'{full}': wrong unit suffix '{metric[len(base):]}'; drift is in the "
                                     f"model's output units, write max_drift_{base}")
            raise BadInput(path, f"unknown key '{full}': unknown drift metric '{metric}' "
                                 f"(known: {', '.join(DRIFT_METRICS)})")
        if isinstance(out.get("drift"), dict) or "drift" not in out:
            out.setdefault("drift", {})[metric] = _number(full, value, path, "the model's output units")
        else:  # max_drift = false in the same section: the explicit key wins
            out["drift"] = {metric: _number(full, value, path, "the model's output units")}
    elif re.match(r"^max_latency(_|$)", key):
        raise BadInput(path, f"'{full}': wrong unit suffix; device latency budgets are in milliseconds, "
                             f"write max_latency_ms")
    elif re.match(r"^max_accuracy_drop_", key):
        raise BadInput(path, f"'{full}': wrong unit suffix; the accuracy drop is in percentage points "
                             f"without a suffix, write max_accuracy_drop")
    elif re.match(r"^max_rmse_increase_", key):
        raise BadInput(path, f"'{full}': wrong unit suffix; the RMSE increase is relative (0.1 = +10 %) "
                             f"without a suffix, write max_rmse_increase")
    else:
        raise BadInput(path, f"unknown key '{full}' (allowed: {', '.join(_KEY_LIST)})")


def budgets_from_config(config, extra_devices=()) -> Budgets:
    return parse_budgets(getattr(config, "budgets", {}) or {}, getattr(config, "path", None),
                         models=list(getattr(config, "models", {}) or {}),
                         devices=known_devices(config) | set(extra_devices))


# --------------------------------------------------------------------------- inputs

def is_quantized(bench_art: dict, manifest_art: dict | None = None) -> bool:
    """True only when the export says the weights are quantized and no note says otherwise:
    a float file must never pass for quantized."""
    src = manifest_art if manifest_art else bench_art
    notes = list((manifest_art or {}).get("notes") or []) + list(bench_art.get("notes") or [])
    if any("NOT QUANTIZED" in str(n) for n in notes):
        return False
    return bool(src.get("quantized"))


def load_bench(config, model: str):
    """(bench dict, path) for a model; BadInput when there are no bench results."""
    from groundfloor.fileio import read_json
    path = Path(config.reports_dir) / model / "bench.json"
    if not path.is_file():
        raise BadInput(path, f"no bench results for model '{model}' (run `edge bench --models {model}` first)")
    try:
        bench = read_json(path)
    except ValueError as e:
        raise BadInput(path, f"bench results are not valid JSON: {e}") from None
    if not isinstance(bench, dict) or not isinstance(bench.get("artifacts"), dict):
        raise BadInput(path, "bench results have no 'artifacts' table (re-run `edge bench`)")
    return bench, path


def load_manifest(config, model: str, bench: dict | None = None):
    """(manifest dict | None, path | None): artifacts/<model>/manifest.json, else the bench's artifacts_dir."""
    from groundfloor.fileio import read_json
    cands = [Path(config.artifacts_dir) / model / "manifest.json"]
    if bench and bench.get("artifacts_dir"):
        cands.append(Path(bench["artifacts_dir"]) / "manifest.json")
    for p in cands:
        if p.is_file():
            try:
                return read_json(p), p
            except ValueError as e:
                raise BadInput(p, f"manifest is not valid JSON: {e}") from None
    return None, None


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


# --------------------------------------------------------------------------- measuring

def _ok_runners(art):
    return {n: r for n, r in (art.get("runners") or {}).items() if r.get("status") == "ok" and r.get("metrics")}


def measure(budget_key, art, bench, device=None):
    """(value, detail) of what a budget is judged on, or (None, why) when it cannot be measured."""
    if art.get("status") != "ok":
        return None, f"artifact did not run: {art.get('status')}: {art.get('error') or 'no reason given'}"
    runners = _ok_runners(art)
    if budget_key in ("max_accuracy_drop", "max_rmse_increase") or budget_key.startswith("max_drift_"):
        if not runners:
            return None, "no runner produced metrics"
    worst, who = None, None
    if budget_key == "max_accuracy_drop":
        for rn, rr in runners.items():
            t = (rr["metrics"] or {}).get("truth") or {}
            if t.get("acc") is None or t.get("acc_float") is None:
                continue
            v = 100.0 * (t["acc_float"] - t["acc"])
            if worst is None or v > worst:
                worst, who = v, rn
        return (worst, f"worst runner: {who}") if worst is not None else (None, "no ground truth labels")
    if budget_key == "max_rmse_increase":
        ref = ((bench.get("float_reference") or {}).get("truth") or {}).get("rmse")
        if not ref:
            return None, "no float reference RMSE (no ground truth)"
        worst_pair = None
        for rn, rr in runners.items():
            truth = (rr["metrics"] or {}).get("truth") or {}
            r = truth.get("rmse")
            if r is None:
                continue
            base = truth.get("rmse_float") or ref  # the float model on the same windows
            v = (r - base) / base
            if worst is None or v > worst:
                worst, who, worst_pair = v, rn, (r, base)
        if worst is None:
            return None, "no ground truth"
        return worst, (f"worst runner: {who}; task RMSE {_fmt(worst_pair[0])} vs float {_fmt(worst_pair[1])}"
                       f" on the same windows")
    if budget_key.startswith("max_drift_"):
        metric = budget_key[len("max_drift_"):]
        for rn, rr in runners.items():
            cross = (rr["metrics"] or {}).get("cross") or {}
            if metric == "argmax_disagreement":
                a = cross.get("argmax_agreement")
                v = None if a is None else 1.0 - a
            else:
                v = cross.get(metric)
            if v is None:
                continue
            if worst is None or v > worst:
                worst, who = v, rn
        return (worst, f"worst runner: {who}") if worst is not None else (None, f"no '{metric}' drift figure")
    d = (art.get("devices") or {}).get(device) if device else None
    if d is None:
        return None, f"no results for device {device}"
    if budget_key == "max_latency_ms":
        emu = d.get("latency_emulated") or {}
        est = d.get("latency") or {}
        if emu.get("value") is not None:
            return emu["value"] / 1000.0, "emulated"
        if est.get("value") is not None:
            return est["value"] / 1000.0, "estimated"
        return None, "no device latency"
    if budget_key == "must_fit":
        fit = d.get("fit") or {}
        verdict = fit.get("verdict", "unknown")
        return (1.0 if fit.get("fits") is True else 0.0), verdict
    raise KeyError(budget_key)


def _fmt(v, key=""):
    if v is None:
        return "n/a"
    if key == "must_fit":
        return "fits" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        if abs(v) >= 0.01:
            return f"{v:.3f}".rstrip("0").rstrip(".")
        return f"{v:.3g}"
    return str(v)


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


def evaluate_model(model, bench, manifest, budgets: Budgets, devices, all_artifacts=False) -> list[Row]:
    """Judge one model's bench results against its budgets. all_artifacts: ignore the `artifacts`
    selection (the report uses this to judge every variant by the same budget values)."""
    task = bench.get("task") or (manifest or {}).get("task") or "regression"
    arts = bench["artifacts"]
    marts = (manifest or {}).get("artifacts") or {}
    quant = {n: is_quantized(a, marts.get(n)) for n, a in arts.items()}
    rows = []
    missing_art = {"status": "missing", "error": "not in the bench results (not exported or not benched)"}

    mb = budgets.for_model(model)
    chosen, missing = _select(list(arts), ["all"] if all_artifacts else mb.artifacts, quant.get)
    for name in chosen + ([] if all_artifacts else missing):
        art = arts.get(name, missing_art)
        if task == "classification" and mb.accuracy_drop is not None:
            rows.append(_judge(model, name, art, bench, "max_accuracy_drop", mb.accuracy_drop, "points",
                               None, mb.origin.get("max_accuracy_drop", "")))
        if task != "classification" and mb.rmse_increase is not None:
            rows.append(_judge(model, name, art, bench, "max_rmse_increase", mb.rmse_increase, "relative",
                               None, mb.origin.get("max_rmse_increase", "")))
        for metric, limit in sorted(mb.drift.items()):
            if metric == "argmax_disagreement" and task != "classification":
                continue
            unit = "fraction" if metric == "argmax_disagreement" else "output units"
            rows.append(_judge(model, name, art, bench, f"max_drift_{metric}", limit, unit, None,
                               mb.origin.get(f"max_drift_{metric}", "")))
    for dev in devices:
        db = budgets.for_device(model, dev)
        chosen, missing = _select(list(arts), ["all"] if all_artifacts else db.artifacts, quant.get)
        for name in chosen + ([] if all_artifacts else missing):
            art = arts.get(name, missing_art)
            if db.latency_ms is not None:
                rows.append(_judge(model, name, art, bench, "max_latency_ms", db.latency_ms, "ms", dev,
                                   db.origin.get("max_latency_ms", "")))
            if db.must_fit:
                rows.append(_judge(model, name, art, bench, "must_fit", True, "", dev,
                                   db.origin.get("must_fit", "")))
    order = {n: i for i, n in enumerate(arts)}
    dev_order = {d: i for i, d in enumerate(devices)}
    rows.sort(key=lambda r: (order.get(r.artifact, len(order)), r.device is not None, dev_order.get(r.device, -1)))
    return rows


def bench_devices(bench, requested=None, config_devices=None, path=None):
    """Devices to judge: the requested ones (each must be in the bench results), else the bench's
    devices that the config lists (all of the bench's when the config lists none)."""
    have = list((bench.get("devices") or {}).keys())
    if requested:
        for d in requested:
            if d not in have:
                raise BadInput(path, f"no bench results for device '{d}' (benched: {', '.join(have) or 'none'}); "
                                     f"re-run `edge bench` with it")
        return list(requested)
    if config_devices:
        names = set()
        for spec in config_devices:
            names.add(Path(spec).stem if spec.endswith(".toml") else spec)
        sel = [d for d in have if d in names]
        return sel or have
    return have


# --------------------------------------------------------------------------- output

def format_table(rows: list[Row]) -> str:
    head = ["model", "artifact", "device", "budget", "limit", "measured", "result", "detail"]
    body = []
    for r in rows:
        limit = "fits" if r.budget == "must_fit" else f"{_fmt(r.limit)} {r.unit}".strip()
        meas = _fmt(r.measured, r.budget)
        if r.budget == "must_fit" and r.measured is not None and r.measured != 1.0:
            meas = r.detail
        body.append([r.model, r.artifact, r.device or "-", r.budget, limit,
                     f"{meas} {r.unit}".strip() if r.budget != "must_fit" and r.measured is not None else meas,
                     r.status.upper(), r.detail if r.budget != "must_fit" else ""])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)] if body else [len(h) for h in head]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    return "\n".join(lines)


def junit_xml(rows: list[Row], sources: dict | None = None) -> str:
    """One <testsuite> per model, one <testcase> per model x artifact x budget."""
    root = ET.Element("testsuites", name="edge check", tests=str(len(rows)),
                      failures=str(sum(r.status == "fail" for r in rows)),
                      skipped=str(sum(r.status == "skip" for r in rows)))
    models = list(dict.fromkeys(r.model for r in rows))
    for m in models:
        mr = [r for r in rows if r.model == m]
        suite = ET.SubElement(root, "testsuite", name=m, tests=str(len(mr)),
                              failures=str(sum(r.status == "fail" for r in mr)), errors="0",
                              skipped=str(sum(r.status == "skip" for r in mr)))
        if sources and m in sources:
            props = ET.SubElement(suite, "properties")
            for k, v in sources[m].items():
                ET.SubElement(props, "property", name=k, value=str(v))
        for r in mr:
            tc = ET.SubElement(suite, "testcase", classname=f"{m}.{r.artifact}", name=r.name, time="0")
            limit = "fits" if r.budget == "must_fit" else f"{_fmt(r.limit)} {r.unit}".strip()
            meas = r.detail if r.budget == "must_fit" else f"{_fmt(r.measured)} {r.unit}".strip()
            msg = f"{r.budget}: measured {meas}, budget {limit}" + (f" ({r.detail})" if r.detail and
                                                                       r.budget != "must_fit" else "")
            if r.status == "fail":
                f = ET.SubElement(tc, "failure", message=msg, type="BudgetExceeded")
                f.text = msg + (f"\nbudget from [{r.origin}]" if r.origin else "")
            elif r.status == "skip":
                ET.SubElement(tc, "skipped", message=f"{r.budget}: cannot be measured: {r.detail}")
            else:
                ET.SubElement(tc, "system-out").text = msg
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


@dataclass
class CheckResult:
    rows: list
    junit_path: Path | None

    @property
    def failed(self):
        return [r for r in self.rows if r.status == "fail"]


def run_check(config, model_names=None, devices=None, junit=None, progress=print) -> CheckResult:
    """Judge every selected model; print the table; write JUnit XML. Raises BadInput on bad input."""
    from groundfloor.fileio import sha256_file, write_text
    entries = config.select(model_names)
    loaded = []
    for m in entries:  # all inputs first: a missing bench is bad input before anything is judged
        bench, bpath = load_bench(config, m.name)
        manifest, _ = load_manifest(config, m.name, bench)
        loaded.append((m.name, bench, bpath, manifest))
    extra = {d for _, b, _, _ in loaded for d in (b.get("devices") or {})}
    budgets = budgets_from_config(config, extra_devices=extra)
    rows, sources = [], {}
    for name, bench, bpath, manifest in loaded:
        devs = bench_devices(bench, devices, getattr(config, "devices", None), bpath)
        rows += evaluate_model(name, bench, manifest, budgets, devs)
        sources[name] = {"bench": str(bpath), "bench_sha256": sha256_file(bpath),
                         "manifest_sha256": bench.get("manifest_sha256", "")}
    if progress:
        progress(format_table(rows) if rows else "no budgets apply (add [budgets] to the config)")
        n_fail, n_skip = sum(r.status == "fail" for r in rows), sum(r.status == "skip" for r in rows)
        progress(f"{len(rows)} budgets checked: {len(rows) - n_fail - n_skip} passed, {n_fail} failed"
                 + (f", {n_skip} skipped (not measurable)" if n_skip else ""))
    junit_path = Path(junit) if junit else Path(config.reports_dir) / "check.xml"
    write_text(junit_path, junit_xml(rows, sources))
    if progress:
        progress(f"-> {junit_path}")
    return CheckResult(rows, junit_path)


def cmd_check(args):
    from edge.config import load_config
    cfg = load_config(args.config)
    models = args.models.split(",") if args.models else None
    devices = args.devices.split(",") if args.devices else None
    res = run_check(cfg, models, devices, junit=args.junit, progress=lambda m: print(m, flush=True))
    return 1 if res.failed else 0


def add_check_parser(subparsers):
    s = subparsers.add_parser("check", help="the CI gate: budgets from the config, JUnit XML, exit 1 when exceeded")
    s.add_argument("--models", help="comma-separated model names from the config (default: all)")
    s.add_argument("--devices", help="comma-separated device names (default: the config's devices that were benched)")
    s.add_argument("--junit", help="JUnit XML output (default: <reports_dir>/check.xml)")
    s.set_defaults(func=cmd_check)
    return s
