"""Cost-model calibration: per emulated device, the latency estimate of the int8 whole-sequence
artifact against its emulated figure, and the calibrated estimates of the model's other int8
.tflite artifacts (bench.json "calibration" and devices.<profile>.latency_calibrated)."""
from __future__ import annotations

CALIBRATION_METHOD = ("effective cycles per int8 MAC = emulated cycles of the whole-sequence int8 model "
                      "(instructions x the profile's cycles_per_instruction) / its MACs, everything included "
                      "(gate matrices, activations, cell update, dense head); calibrated estimate of another "
                      "int8 .tflite artifact = its int8 MACs x that figure (+ any non-int8 MACs at the profile's "
                      "cost). The emulated firmware is generated C without an interpreter: a TFLite Micro "
                      "deployment adds per-invoke dispatch, given separately as dispatch_overhead_us.")


def calibrate(report: dict, profiles) -> dict:
    """Per emulated device: the cost-model estimate against the emulated figure of the int8
    whole-sequence artifact, the effective cycles per int8 MAC derived from it, and calibrated
    estimates (devices.<profile>.latency_calibrated) for the model's other int8 .tflite artifacts.
    Devices without an emulated run get {"status": "not_emulated", "reason"}."""
    out = {}
    arts = report["artifacts"]
    for prof in profiles:
        src = _source(arts, prof)
        if src is None:
            out[prof.name] = {"status": "not_emulated", "reason": _not_emulated_reason(arts, prof)}
            continue
        a = arts[src]
        macs_by = (a.get("analysis") or {}).get("macs_by_dtype") or {}
        macs = macs_by.get("int8") or (a.get("analysis") or {}).get("macs")
        if not macs:
            out[prof.name] = {"status": "error", "reason": f"{src}: no MAC count from the static analysis"}
            continue
        cal, eff = _calibration(a["devices"][prof.name], prof, src, macs)
        for name, b in arts.items():
            if name == src or b.get("status") != "ok" or b.get("format") != "tflite":
                continue
            lc = _calibrated_latency(b, prof, cal, eff)
            if lc is not None:
                b["devices"][prof.name]["latency_calibrated"] = lc
                cal["calibrated"][name] = {k: lc.get(k) for k in ("value", "per_step", "uncalibrated_us",
                                                                   "uncalibrated_per_step", "dispatch_overhead_us",
                                                                   "invokes_per_window")}
        out[prof.name] = cal
    return out


def _source(arts: dict, prof):
    """The first whole-sequence artifact with both an emulated and an estimated cycle count."""
    for name, a in arts.items():
        d = (a.get("devices") or {}).get(prof.name) or {}
        if (a.get("status") == "ok" and not a.get("streaming") and (d.get("latency_emulated") or {}).get("cycles")
                and (d.get("latency") or {}).get("cycles")):
            return name
    return None


def _not_emulated_reason(arts: dict, prof) -> str:
    why = next((d["emulated"].get("reason") or d["emulated"].get("error") or d["emulated"].get("status")
                for a in arts.values() for d in [(a.get("devices") or {}).get(prof.name) or {}]
                if isinstance(d.get("emulated"), dict) and d["emulated"].get("status") != "ok"), None)
    return why or "no emulated run of an int8 whole-sequence artifact on this device"


def _calibration(d: dict, prof, src: str, macs) -> tuple[dict, float]:
    """The calibration record of one device from its source artifact's figures d (also adds
    d["latency_vs_emulated"]), and the unrounded effective cycles per int8 MAC."""
    emu, est = d["latency_emulated"], d["latency"]
    eff = emu["cycles"] / macs
    factor = emu["cycles"] / est["cycles"]
    cal = {"status": "ok", "source_artifact": src, "board": emu.get("board"), "macs_int8": int(macs),
           "emulated_us": emu["value"], "emulated_cycles": emu["cycles"], "instructions": emu.get("instructions"),
           "cycles_per_instruction": emu.get("cycles_per_instruction"),
           "estimated_us": est["value"], "estimated_cycles": est["cycles"],
           "gap_pct": round(100.0 * (est["value"] - emu["value"]) / emu["value"], 2),
           "factor": round(factor, 4), "effective_cycles_per_mac_int8": round(eff, 4),
           "profile_cycles_per_mac_int8": prof.cycles_per_mac_int8, "kind": "estimated",
           "method": CALIBRATION_METHOD, "calibrated": {}}
    d["latency_vs_emulated"] = {"estimated_us": est["value"], "emulated_us": emu["value"],
                                "gap_pct": cal["gap_pct"], "factor": cal["factor"]}
    return cal, eff


def _calibrated_latency(b: dict, prof, cal: dict, eff: float) -> dict | None:
    """devices.<profile>.latency_calibrated of another int8 .tflite artifact b, or None when it has
    no int8 MACs or no estimate on this device."""
    an = b.get("analysis") or {}
    mb = an.get("macs_by_dtype") or {}
    if not mb.get("int8"):
        return None
    bd = (b.get("devices") or {}).get(prof.name)
    if not bd or not bd.get("latency"):
        return None
    inv = int(an.get("invokes_per_window") or 1)
    per_invoke = sum(m * (eff if dt == "int8" else prof.cycles_per_mac(dt)) for dt, m in mb.items())
    cycles = per_invoke * inv
    overhead = inv * (an.get("ops") or 0) * prof.op_overhead_cycles
    lc = {"kind": "estimated", "basis": "calibrated", "unit": "us",
          "value": round(cycles / prof.clock_hz * 1e6, 3), "cycles": round(cycles),
          "invokes_per_window": inv,
          "uncalibrated_us": bd["latency"]["value"],
          "dispatch_overhead_us": round(overhead / prof.clock_hz * 1e6, 3),
          "calibration": {"source_artifact": cal["source_artifact"],
                          "effective_cycles_per_mac_int8": cal["effective_cycles_per_mac_int8"],
                          "profile_cycles_per_mac_int8": prof.cycles_per_mac_int8, "factor": cal["factor"]},
          "method": CALIBRATION_METHOD}
    if inv > 1:
        lc["per_step"] = round(lc["value"] / inv, 3)
        lc["uncalibrated_per_step"] = bd["latency"].get("per_step")
    if (bd.get("latency_emulated") or {}).get("value"):
        lc["emulated_us"] = bd["latency_emulated"]["value"]
    return lc
