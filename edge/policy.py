"""The choice rules shared by `edge check` and `edge report`: which artifacts count as quantized,
the order artifacts are listed (and ties broken) in, and the best artifact per device.

    judged = budgets.evaluate_model(model, bench, manifest, budgets, devices, all_artifacts=True)
    best = best_per_device(bench, devices, judged)   # {device: {"artifact", "bytes", ...}}
"""
from __future__ import annotations

BEST_RULE = ("For each device the best choice is the smallest artifact (file bytes, i.e. the flash the model "
             "itself takes) among the whole-sequence artifacts that ran, fit the device (flash and RAM verdict "
             "\"fits\") and meet every budget the config sets for this model and device (accuracy/RMSE, drift, "
             "latency), with the budget values applied to every variant, quantized or not; ties go to the lower "
             "device latency. On microcontroller profiles (device_class \"mcu\") only .tflite artifacts are "
             "candidates: TFLite Micro runs them bare-metal, while no ONNX runtime here targets a microcontroller. "
             "Streaming variants are listed separately and not ranked.")
MCU_FORMATS = {"tflite"}   # formats with a bare-metal runtime (TFLite Micro)
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


def _qualifies(art: dict, d: dict | None, mcu: bool, failures: list) -> bool:
    return (not art.get("streaming") and art.get("status") == "ok" and d is not None
            and (not mcu or art.get("format") in MCU_FORMATS)
            and (d.get("fit") or {}).get("verdict", "unknown") == "fits" and not failures
            and bool(art.get("bytes")))


def best_per_device(bench: dict, devices, judged) -> dict:
    """{device: {"artifact", "bytes", "latency_us", "ram_need", "why"} | {"artifact": None, "why"}}
    by BEST_RULE. judged: evaluate_model(..., all_artifacts=True), every variant by the same budgets."""
    arts = bench["artifacts"]
    best = {}
    for dev in devices:
        mcu = ((bench.get("devices") or {}).get(dev) or {}).get("device_class") == "mcu"
        cands = [n for n in order(arts) if _qualifies(arts[n], (arts[n].get("devices") or {}).get(dev), mcu,
                                                       budget_failures(judged, n, dev))]
        if not cands:
            best[dev] = {"artifact": None, "why": "no artifact fits this device and meets every budget"
                                                  + (" (.tflite only on a microcontroller)" if mcu else "")}
            continue

        def latency(n, kind):
            return ((arts[n]["devices"][dev].get(kind) or {}).get("value"))
        cands.sort(key=lambda n: (arts[n]["bytes"], latency(n, "latency") or float("inf")))
        b = cands[0]
        best[dev] = {"artifact": b, "bytes": arts[b]["bytes"],
                     "latency_us": latency(b, "latency_emulated") or latency(b, "latency"),
                     "ram_need": ((arts[b]["devices"][dev].get("fit") or {}).get("ram") or {}).get("need"),
                     "why": f"smallest of {len(cands)} qualifying artifact(s)"}
    return best
