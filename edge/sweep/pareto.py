"""Per-device points of a sweep (one per variant x quantization candidate x device), their Pareto
fronts (task error, latency, RAM, flash: all minimised) and the recommendation: the smallest point
(flash, then RAM, latency, error) that meets every budget, or else the nearest miss with what it misses.

The figures are the bench's, read the way `edge check` reads them (edge.budgets.measure, edge.policy):
RAM and flash are the fit's need on the profile (TFLite Micro arena or emulated firmware, plus the
profile's runtime reserve); the task metric is the worst over the device's runtimes that ran the file.

Latency comes in kinds, and every point carries each kind it has (latency_by_kind): "emulated"
(instruction count of the emulated Cortex-M firmware: int8 / 16x8 files), "estimated" (the cost
model from the file's operators: every file) and "measured_host" (wall time of the device's
runtimes on the bench host: not the device, shown only). Two uses, two rules:
  - a budget judges each point on its device figure, as `edge check` does (latency_ms: emulated where
    it ran, else estimated), so the gate and the sweep agree;
  - points are compared with each other (the Pareto fronts, the ranking) on one kind per device
    (latency_compared_ms): emulated when every point of the device has it, else the estimate for all;
    the cost model and the emulated instruction count differ by -14 % to +4 % for the same file
    (README), in either direction, so mixing them would rank files by which figure they have.
"""
from __future__ import annotations

import math

OBJECTIVES = ("error", "latency_ms", "ram_bytes", "flash_bytes")
PLOT_PAIRS = ("latency_ms", "ram_bytes", "flash_bytes")   # error against each of these, one plot each
COMPARED = {"latency_ms": "latency_compared_ms"}          # the field the fronts read for an objective
# the kinds points are compared on, most trusted first; "simulated": edge.sweep.fake
LATENCY_BASIS = ("emulated", "estimated", "simulated")
METRIC = {"regression": "rmse", "classification": "accuracy"}
TRUTH_KEY = {"rmse": "rmse", "accuracy": "acc"}


def error_of(metric_name: str, value):
    """The minimised form of a task metric: RMSE as it is, accuracy as 1 - accuracy."""
    if value is None:
        return None
    return 1.0 - value if metric_name == "accuracy" else value


# --------------------------------------------------------------------------- points from a bench

def _device_metric(art, runs, metric_name):
    vals = [((art["runners"][r].get("metrics") or {}).get("truth") or {}).get(TRUTH_KEY[metric_name]) for r in runs]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return min(vals) if metric_name == "accuracy" else max(vals)   # the worst runtime counts


def _latency_by_kind(art, d, runs) -> dict:
    """{kind: ms or None}: the emulated and the estimated device latency, and the slowest p50 per window
    of the device's runtimes on the bench host."""
    emu, est = d.get("latency_emulated") or {}, d.get("latency") or {}
    host = []
    for r in runs:
        lh = (art["runners"][r].get("latency_host") or {})
        if lh.get("p50") is not None:
            host.append(lh["p50"] * (est.get("invokes_per_window") or 1) / 1000.0 if lh.get("per") == "invoke"
                        else lh["p50"] / 1000.0)
    ms = {k: None if f.get("value") is None else f["value"] / 1000.0
          for k, f in (("emulated", emu), ("estimated", est))}
    return dict(ms, measured_host=max(host) if host else None)


def _point(name, art, bench, dev, metric_name) -> dict:
    from edge.budgets import measure
    from edge.policy import ran_on
    d = (art.get("devices") or {}).get(dev) or {}
    runs, why = ran_on(art, bench, dev)
    fit = d.get("fit") or {}
    ram, flash = fit.get("ram") or {}, fit.get("flash") or {}
    lat, lat_kind = measure("max_latency_ms", art, bench, dev) if runs else (None, why)
    metric = _device_metric(art, runs, metric_name) if runs else None
    return {"artifact": name, "device": dev, "runs_on_device": bool(runs), "runtimes": runs, "why": why,
            "metric_name": metric_name, "metric": metric, "error": error_of(metric_name, metric),
            "latency_ms": lat, "latency_kind": lat_kind if lat is not None else None,
            "latency_by_kind": _latency_by_kind(art, d, runs) if runs else {},
            "ram_bytes": ram.get("need"), "ram_limit_device": ram.get("budget"), "ram_kind": ram.get("kind"),
            "flash_bytes": flash.get("need"), "flash_limit_device": flash.get("budget"),
            "flash_kind": flash.get("kind"), "fit_verdict": fit.get("verdict", "unknown"),
            "file_bytes": art.get("bytes"), "mode": art.get("mode")}


def variant_points(bench: dict, candidates: list, kind: str) -> dict:
    """{"artifacts": {candidate: status}, "points": [...]} of one variant's bench.json."""
    metric_name = METRIC[kind]
    arts, points, status = bench["artifacts"], [], {}
    for name in candidates:
        art = arts.get(name)
        if art is None:
            status[name] = {"status": "missing", "error": "not in the bench (the export did not build it)"}
            continue
        status[name] = {"status": art["status"], "error": art.get("error") or "", "bytes": art.get("bytes")}
        if art["status"] != "ok":
            continue
        points += [_point(name, art, bench, dev, metric_name) for dev in bench["devices"]]
    return {"artifacts": status, "points": points}


# --------------------------------------------------------------------------- fronts

def dominates(a: dict, b: dict, keys=OBJECTIVES) -> bool:
    """a is no worse than b in every key and better in one."""
    return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)


def complete(p: dict, keys=OBJECTIVES) -> bool:
    return p.get("runs_on_device", True) and all(p.get(k) is not None and not math.isnan(p[k]) for k in keys)


def pareto_front(points: list, keys=OBJECTIVES) -> list[int]:
    """Indices (into points) of the non-dominated points among those with every key measured,
    in the order given. Equal points do not dominate each other: both stay."""
    cand = [i for i, p in enumerate(points) if complete(p, keys)]
    return [i for i in cand if not any(dominates(points[j], points[i], keys) for j in cand if j != i)]


# --------------------------------------------------------------------------- budgets and the choice

def _limits(point: dict, budgets: dict) -> list:
    """(budget name, limit, measured, higher is better) for every budget that applies to the point:
    the space's own and the device profile's flash and SRAM."""
    out = []
    for key, measured in (("max_latency_ms", point["latency_ms"]), ("max_rmse", point["metric"])):
        if key in budgets:
            out.append((key, budgets[key], measured, False))
    if "min_accuracy" in budgets:
        out.append(("min_accuracy", budgets["min_accuracy"], point["metric"], True))
    for key, field, dev_limit in (("max_ram_kib", "ram_bytes", "ram_limit_device"),
                                  ("max_flash_kib", "flash_bytes", "flash_limit_device")):
        measured = point[field]
        if key in budgets:
            out.append((key, budgets[key], None if measured is None else measured / 1024.0, False))
        if point.get(dev_limit) is not None:
            out.append((f"device_{field.split('_')[0]}", point[dev_limit], measured, False))
    return out


def misses(point: dict, budgets: dict) -> list[dict]:
    """The budgets a point misses: {"budget", "limit", "measured", "excess"} (excess: the relative
    distance past the limit; None when the figure could not be measured)."""
    out = []
    if not point["runs_on_device"]:
        return [{"budget": "runs_on_device", "limit": True, "measured": False, "excess": None,
                 "detail": point["why"]}]
    for name, limit, measured, higher in _limits(point, budgets):
        if measured is None:
            out.append({"budget": name, "limit": limit, "measured": None, "excess": None})
        elif (measured < limit) if higher else (measured > limit):
            excess = abs(measured - limit) / limit if limit else math.inf
            out.append({"budget": name, "limit": limit, "measured": measured, "excess": excess})
    return out


def _size_key(p):
    def v(key):
        return math.inf if p.get(key) is None else p[key]
    latency = COMPARED["latency_ms"] if COMPARED["latency_ms"] in p else "latency_ms"   # set by device_results
    return v("flash_bytes"), v("ram_bytes"), v(latency), v("error")


def _distance(miss_list) -> float:
    """How far a point is from meeting every budget: the sum of relative excesses (unmeasured: inf)."""
    return sum(math.inf if m["excess"] is None else m["excess"] for m in miss_list)


def recommend(points: list, budgets: dict) -> dict:
    """{"status": "met", "index", "why"} for the smallest point meeting every budget, else
    {"status": "missed", "index", "misses", "why"} for the nearest miss, or {"status": "none", "why"}."""
    if not points:
        return {"status": "none", "index": None, "why": "no variant produced a point for this device"}
    judged = [(i, misses(p, budgets)) for i, p in enumerate(points)]
    meeting = [i for i, m in judged if not m]
    if meeting:
        best = min(meeting, key=lambda i: _size_key(points[i]))
        return {"status": "met", "index": best, "misses": [],
                "why": f"smallest (flash, then RAM, latency, error) of {len(meeting)} point(s) meeting every budget"}
    i, m = min(judged, key=lambda im: (_distance(im[1]), _size_key(points[im[0]])))
    return {"status": "missed", "index": i, "misses": m,
            "why": f"no point meets every budget; nearest miss of {len(points)} (smallest sum of relative excess)"}


def describe_misses(miss_list) -> str:
    """'max_latency_ms: 23.1 > 20' ... as one line."""
    parts = []
    for m in miss_list:
        if m["measured"] is None:
            parts.append(f"{m['budget']}: not measurable" + (f" ({m['detail']})" if m.get("detail") else ""))
        elif m["budget"] == "runs_on_device":
            parts.append(f"runs_on_device: no ({m.get('detail', '')})")
        else:
            op = "<" if m["budget"].startswith("min_") else ">"
            parts.append(f"{m['budget']}: {m['measured']:.4g} {op} {m['limit']:.4g} (+{100 * m['excess']:.0f} %)")
    return "; ".join(parts)


def kinds_of(p: dict) -> dict:
    """{kind: ms} of a point (a point from before latency_by_kind: its one figure)."""
    if p.get("latency_by_kind"):
        return p["latency_by_kind"]
    return {p["latency_kind"]: p["latency_ms"]} if p.get("latency_kind") else {}


def latency_basis(points: list) -> dict:
    """The one latency kind a device's points are compared on: the most trusted kind (LATENCY_BASIS)
    that every point with a latency has; None when they share none (latency then stays out of the fronts)."""
    timed = [p for p in points if p.get("runs_on_device", True) and p.get("latency_ms") is not None]
    counts = {k: sum(kinds_of(p).get(k) is not None for p in timed) for k in LATENCY_BASIS}
    kind = next((k for k in LATENCY_BASIS if timed and counts[k] == len(timed)), None)
    return {"kind": kind, "points": len(timed), "have": {k: n for k, n in counts.items() if n}}


def describe_basis(basis: dict) -> str:
    """One sentence: which latency kind decides the comparison, and why."""
    kind, n, have = basis["kind"], basis["points"], basis["have"]
    if kind is None:
        return (f"latency left out of the front and the ranking: the {n} timed point(s) share no latency kind "
                f"({', '.join(f'{k} {c}' for k, c in have.items()) or 'none'})")
    if kind == "emulated" or have.get("emulated", 0) == 0:
        return f"latency compared as {kind} (all {n} point(s) have it)"
    return (f"latency compared as {kind} for all {n} point(s): only {have['emulated']} have an emulated figure, "
            "and emulated and estimated latencies are not compared with each other")


def device_results(points: list, budgets_by_device: dict) -> dict:
    """{device: {"front": [point index], "fronts_2d": {pair: [...]}, "recommendation": {...},
    "latency_basis": {...}}}, indices into `points` (every point of the sweep; each carries "device").
    Sets each point's latency_compared_ms / latency_compared_kind (the device's basis)."""
    out = {}
    for dev, budgets in budgets_by_device.items():
        idx = [i for i, p in enumerate(points) if p["device"] == dev]
        sub = [points[i] for i in idx]
        basis = latency_basis(sub)
        for p in sub:
            p["latency_compared_kind"] = basis["kind"]
            p["latency_compared_ms"] = kinds_of(p).get(basis["kind"]) if basis["kind"] else None
        lat = (COMPARED["latency_ms"],) if basis["kind"] else ()
        rec = recommend(sub, budgets)
        if rec.get("index") is not None:
            rec["index"] = idx[rec["index"]]
        pairs = {k: ("error", COMPARED.get(k, k)) for k in PLOT_PAIRS if basis["kind"] or k not in COMPARED}
        out[dev] = {"points": idx, "front": [idx[i] for i in pareto_front(sub, ("error",) + lat + OBJECTIVES[2:])],
                    "fronts_2d": {k: [idx[i] for i in pareto_front(sub, keys)] for k, keys in pairs.items()},
                    "budgets": budgets, "recommendation": rec, "latency_basis": basis}
    return out
