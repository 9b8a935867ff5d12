"""The choice rules shared by `edge check` and `edge report`: which artifacts count as quantized,
the order artifacts are listed (and ties broken) in, and the best artifact per device.

    judged = budgets.evaluate_model(model, bench, manifest, budgets, devices, all_artifacts=True)
    best = best_per_device(bench, devices, judged)   # {device: {"artifact", "bytes", ...}}
"""
from __future__ import annotations

BEST_RULE = ("For each device the best choice is the smallest artifact (file bytes, i.e. the flash the model "
             "itself takes) among the whole-sequence artifacts that one of the device's runtimes ran on the bench "
             "(its profile's `runtimes`: TFLite Micro or the emulated firmware on microcontrollers, LiteRT or "
             "onnxruntime on Linux boards), that fit the device (flash and RAM verdict \"fits\") and meet every "
             "budget the config sets for this model and device (accuracy/RMSE, drift, latency), with the budget "
             "values applied to every variant, quantized or not; ties go to the lower device latency. "
             "Streaming variants are listed separately and not ranked.")
MODE_RANK = {"float32": 0, "float16": 1, "dynamic": 2, "dynamic_int8": 2, "int8": 3, "qdq_int8": 4, "int16x8": 5}
NOT_QUANTIZED = "NOT QUANTIZED"   # the export's note on a file whose weights stayed float


def _notes(bench_art: dict, manifest_art: dict | None) -> list:
    return list((manifest_art or {}).get("notes") or []) + list(bench_art.get("notes") or [])


def is_quantized(bench_art: dict, manifest_art: dict | None = None) -> bool:
    """True only when the export says the weights are quantized (the manifest's "quantized",
    which export.inspect.is_quantized measured on the file) and no note says otherwise: a float
    file must never pass for quantized."""
    src = manifest_art if manifest_art else bench_art
    if any(NOT_QUANTIZED in str(n) for n in _notes(bench_art, manifest_art)):
        return False
    return bool(src.get("quantized"))


def quantization(bench_art: dict, manifest_art: dict | None = None) -> tuple[bool, str]:
    """(is_quantized, the words the report shows for it)."""
    if is_quantized(bench_art, manifest_art):
        return True, "yes"
    mode = (manifest_art or bench_art).get("mode") or ""
    if any(NOT_QUANTIZED in str(n) for n in _notes(bench_art, manifest_art)):
        return False, f"NO: float file ({mode} requested, weights stayed float)"
    if mode and mode != "float32" and ("int" in mode or "dynamic" in mode or "q" in mode):
        return False, f"no ({mode} requested; not quantized per the manifest)"
    return False, "no"


def order(arts: dict) -> list[str]:
    """Artifact names, whole-sequence before streaming; by format (first seen); float before
    quantized within a format, so float and int8 sit in adjacent rows. Ties of the best choice go
    to the first in this order."""
    fmts = list(dict.fromkeys(a.get("format") or "?" for a in arts.values()))
    names = list(arts)
    return sorted(names, key=lambda n: (bool(arts[n].get("streaming")), fmts.index(arts[n].get("format") or "?"),
                                        MODE_RANK.get(arts[n].get("mode"), 9), names.index(n)))


def budget_failures(judged, artifact: str, device: str) -> list[str]:
    """Names of the budgets an artifact fails on a device (model-level ones included)."""
    return [j.name for j in judged if j.artifact == artifact and j.device in (None, device) and j.status == "fail"]


def device_runtimes(bench: dict, device: str) -> tuple:
    """The bench runners that stand for what the device runs (its profile's `runtimes`)."""
    from firmware_sim.profiles import DEFAULT_RUNTIMES   # for bench files older than `runtimes`
    prof = (bench.get("devices") or {}).get(device) or {}
    return tuple(prof.get("runtimes") or DEFAULT_RUNTIMES.get(prof.get("device_class"), ()))


def ran_on(art: dict, bench: dict, device: str) -> tuple[list, str]:
    """(the device's runtimes that ran the artifact, why none did)."""
    runtimes = device_runtimes(bench, device)
    runners = art.get("runners") or {}
    ok = [r for r in runtimes if (runners.get(r) or {}).get("status") == "ok"]
    if ok:
        return ok, ""
    seen = [f"{r}: {(runners.get(r) or {}).get('status', 'not run')}" for r in runtimes]
    return [], (f"{device} runs {', '.join(runtimes) or 'no known runtime'}; none ran it"
                + (f" ({'; '.join(seen)})" if seen else ""))


def _qualifies(art: dict, d: dict | None, runs: list, failures: list) -> bool:
    return (not art.get("streaming") and art.get("status") == "ok" and d is not None and bool(runs)
            and (d.get("fit") or {}).get("verdict", "unknown") == "fits" and not failures
            and bool(art.get("bytes")))


def best_per_device(bench: dict, devices, judged) -> dict:
    """{device: {"artifact", "bytes", "latency_us", "ram_need", "why"} | {"artifact": None, "why"}}
    by BEST_RULE. judged: evaluate_model(..., all_artifacts=True), every variant by the same budgets."""
    arts = bench["artifacts"]
    best = {}
    for dev in devices:
        cands = [n for n in order(arts)
                 if _qualifies(arts[n], (arts[n].get("devices") or {}).get(dev), ran_on(arts[n], bench, dev)[0],
                               budget_failures(judged, n, dev))]
        if not cands:
            best[dev] = {"artifact": None, "why": "no artifact that the device's runtimes "
                         f"({', '.join(device_runtimes(bench, dev))}) ran fits it and meets every budget"}
            continue

        def latency(n, kind):
            return ((arts[n]["devices"][dev].get(kind) or {}).get("value"))
        cands.sort(key=lambda n: (arts[n]["bytes"], latency(n, "latency") or float("inf")))
        b = cands[0]
        best[dev] = {"artifact": b, "bytes": arts[b]["bytes"], "runtimes": ran_on(arts[b], bench, dev)[0],
                     "latency_us": latency(b, "latency_emulated") or latency(b, "latency"),
                     "ram_need": ((arts[b]["devices"][dev].get("fit") or {}).get("ram") or {}).get("need"),
                     "why": f"smallest of {len(cands)} qualifying artifact(s)"}
    return best
