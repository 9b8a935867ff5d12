"""Memory figures of an artifact and the fit verdict against a device profile.

Figures (each {"value": bytes, "kind": "measured" | "estimated" | "emulated", "note"}):
  model_bytes      the artifact file; it lives in flash (measured: file size).
  state_bytes      recurrent state: h and c of every LSTM (h of GRU/RNN), from the model's
                   tensor shapes and dtypes (TFLite variable tensors of the recurrent ops;
                   ONNX hidden_size x directions x batch, float32). Exact for the file; "measured".
  io_bytes         input + output buffers from the graph's input/output tensors; "measured".
  activation_bytes_upper
                   every non-constant tensor added up, no memory planning: an upper bound of
                   the working memory; "estimated".
  arena_bytes      TFLite Micro: the exact minimum arena found by search (measured, 64-bit host
                   build), next to what print_allocations() reported.
  peak_rss_bytes   the runner's host process peak RSS (measured), per runner.

Fit (per artifact and device, see fit()):
  flash need = model bytes + profile.runtime_flash_bytes (runtime/app code, an assumption);
  RAM need   = mcu:   TFLM arena (measured) when there is one, else state + io + activations
                      upper bound (estimated); plus profile.runtime_sram_bytes;
               linux: peak RSS of the runner for the artifact's format (measured on this
                      host) plus profile.runtime_sram_bytes (OS and other processes).
  margin = budget - need (bytes and % of budget); verdict "fits" when both margins >= 0.
  A need's "kind" is "estimated" as soon as one part is an assumption; "parts_kind" says which
  part was measured (an emulated build's own figures are "emulated").
"""
from __future__ import annotations


def fig(value, kind, note=None, **extra):
    out = {"value": int(value) if value is not None else None, "kind": kind}
    if note:
        out["note"] = note
    out.update(extra)
    return out


def memory_figures(artifact_bytes: int, analysis: dict | None) -> dict:
    out = {"model_bytes": fig(artifact_bytes, "measured", "artifact file size (stored in flash)")}
    if not analysis:
        return out
    state = analysis.get("state", [])
    out["state_bytes"] = fig(sum(s["bytes"] for s in state), "measured",
                             "recurrent state (LSTM h and c, GRU/RNN h) from the model's tensor shapes and dtypes",
                             tensors=state)
    io = analysis.get("io", {})
    in_b = sum(t.get("bytes") or 0 for t in io.get("inputs", []))
    out_b = sum(t.get("bytes") or 0 for t in io.get("outputs", []))
    out["io_bytes"] = fig(in_b + out_b, "measured", "graph input + output buffers", inputs=in_b, outputs=out_b)
    out["activation_bytes_upper"] = fig(analysis.get("activation_bytes_upper", 0), "estimated",
                                        "all non-constant tensors summed, without memory planning (upper bound)")
    out["weight_bytes_by_dtype"] = analysis.get("weight_bytes_by_dtype", {})
    return out


def _budget_line(need, budget, kind, basis, parts, parts_kind=None):
    margin = budget - need
    out = {"need": int(need), "budget": int(budget), "margin": int(margin),
           "margin_pct": round(100.0 * margin / budget, 2) if budget else None,
           "fits": margin >= 0, "kind": kind, "basis": basis, "parts": parts}
    if parts_kind:
        out["parts_kind"] = parts_kind
    return out


def fit(profile, memory: dict, arena: dict | None = None, rss_bytes: int | None = None,
        emulated: dict | None = None) -> dict:
    """Flash and RAM need against the profile's budgets, with margins and a verdict.

    arena: the TFLM arena search record (status ok) for this artifact, or None.
    rss_bytes: peak RSS of the host runner for this artifact (for linux-class devices).
    emulated: {"flash_bytes", "ram_bytes"} measured by an emulating runner, preferred when given.
    """
    model = memory["model_bytes"]["value"]
    if emulated and emulated.get("flash_bytes") is not None:
        flash = _budget_line(emulated["flash_bytes"], profile.flash_bytes, "emulated",
                             "firmware image size from the emulated build", {"image": emulated["flash_bytes"]})
    else:
        flash = _budget_line(model + profile.runtime_flash_bytes, profile.flash_bytes, "estimated",
                             "model file (measured) + runtime_flash_bytes (profile assumption)",
                             {"model": model, "runtime_reserve": profile.runtime_flash_bytes},
                             {"model": "measured", "runtime_reserve": "estimated"})
    reserve = profile.runtime_sram_bytes
    if emulated and emulated.get("ram_bytes") is not None:
        ram = _budget_line(emulated["ram_bytes"], profile.sram_bytes, "emulated",
                           "RAM use of the emulated firmware", {"ram": emulated["ram_bytes"]})
    elif profile.device_class == "linux" and rss_bytes:
        ram = _budget_line(rss_bytes + reserve, profile.sram_bytes, "estimated",
                           "runner process peak RSS on this host (measured) + runtime_sram_bytes (OS, assumption)",
                           {"peak_rss": rss_bytes, "runtime_reserve": reserve},
                           {"peak_rss": "measured", "runtime_reserve": "estimated"})
    elif profile.device_class == "mcu" and arena and arena.get("status") == "ok":
        a = arena["min_arena_bytes"]
        ram = _budget_line(a + reserve, profile.sram_bytes, "estimated",
                           "TFLite Micro minimum arena (measured, includes tensors, I/O and state) "
                           "+ runtime_sram_bytes (stack/heap/app, assumption)",
                           {"arena": a, "runtime_reserve": reserve},
                           {"arena": "measured", "runtime_reserve": "estimated"})
    elif "state_bytes" in memory:
        work = (memory["state_bytes"]["value"] + memory["io_bytes"]["value"]
                + memory["activation_bytes_upper"]["value"])
        ram = _budget_line(work + reserve, profile.sram_bytes, "estimated",
                           "state + I/O + all activations without memory planning (upper bound) "
                           "+ runtime_sram_bytes (assumption); no runtime measured for this device class",
                           {"state": memory["state_bytes"]["value"], "io": memory["io_bytes"]["value"],
                            "activations_upper": memory["activation_bytes_upper"]["value"],
                            "runtime_reserve": reserve})
    else:
        ram = None
    fits = flash["fits"] and (ram["fits"] if ram else True)
    verdict = ("fits" if fits else "does not fit") if ram else ("does not fit" if not flash["fits"] else "unknown")
    return {"flash": flash, "ram": ram, "fits": None if verdict == "unknown" else fits, "verdict": verdict}
