"""The report's figures: which ones the data supports, their ids, titles and captions; the drawing
is edge/plots.py (imported only here, when figures are made: matplotlib loads lazily)."""
from __future__ import annotations

import hashlib


def footer(data) -> str:
    """The provenance line every figure carries: sources with sha256, tools, machine."""
    s = data["sources"]
    m = data["machine"]
    parts = [f"bench {s['bench']['path']} sha256 {s['bench']['sha256']}"]
    if s["manifest"]:
        parts.append(f"manifest {s['manifest']['path']} sha256 {s['manifest']['sha256']}")
    tools = data["tool_versions"]["bench"]
    parts.append("tools " + ", ".join(f"{k} {v}" for k, v in tools.items()))
    parts.append(f"machine {m.get('cpu') or '?'} x{m.get('cores_usable') or '?'}, {m.get('platform') or '?'}, "
                 f"python {m.get('python') or '?'}")
    return " | ".join(parts)


def _ran(data):
    return [r for r in data["artifacts"] if r.get("runners")]


def _runner_records(data):
    """("<artifact> / <runner>", runner record) for every runner of every artifact that ran."""
    return [(f"{r['name']} / {rn}", rr) for r in _ran(data) for rn, rr in r["runners"].items()]


def _per_device(data, pick):
    """(names of the artifacts that ran on a device, {(artifact, device): pick(its device record)})."""
    rows = _ran(data)
    return ([r["name"] for r in rows if r["devices"]],
            {(r["name"], d): pick(r["devices"][d]) for r in rows for d in r["devices"]})


def _latency_host(plots, data, foot):
    series = [{"label": label, "stats": rr["latency_host"], "samples": rr["latency_host"].get("samples")}
              for label, rr in _runner_records(data) if rr.get("latency_host")]
    has_samples = any(s["samples"] for s in series)
    yield ("latency_host", "Host latency distribution (measured)",
           "Latency per invoke measured on the bench machine, one row per artifact and runner. "
           + ("Raw samples: box plots." if has_samples else
              "bench.json holds summary statistics only (no raw samples), so the figure draws exactly those: "
              "bar p50–p90, whiskers min–max, tick p99, diamond mean."),
           plots.latency_distribution(series, foot))


def _latency_device(plots, data, foot):
    names, vals = _per_device(data, lambda d: {"estimated": d["latency_estimated_us"],
                                               "emulated": d["latency_emulated_us"]})
    yield ("latency_device", "Device latency (estimated / emulated)",
           "Per window on each device profile: bars are the cost-model estimate from op counts; stars, where "
           "present, an emulated run.", plots.device_latency(names, list(data["devices"]), vals, foot))


def _drift_per_step(plots, data, foot):
    steps = [{"label": label, "values": ps} for label, rr in _runner_records(data)
             if (ps := (rr.get("drift_per_step") or {}).get("rmse"))]
    yield ("drift_per_step", "Drift per time step (measured)",
           "RMSE of each deployed artifact against the float Keras outputs at every output time step.",
           plots.drift_per_step(steps, foot))


def _memory(plots, data, foot):
    names, fits = _per_device(data, lambda d: {"flash": d["flash"], "ram": d["ram"]})
    yield ("memory", "Flash and RAM against device budgets (estimated)",
           "Need as a percentage of each device's flash and SRAM; the dashed line is the budget. Needs include "
           "the profile's runtime reserve (an assumption); the model file and TFLM arena parts are measured.",
           plots.memory_vs_budget(names, list(data["devices"]), fits, foot))


def _accuracy_size(plots, data, foot):
    pts = []
    for r in _ran(data):
        tm = r["runners"].get(r.get("primary_runner") or "", {}).get("task_metric")
        if tm and not r["streaming"]:
            pts.append({"label": r["name"], "bytes": r.get("bytes"), "value": tm["value"], "quantized": r["quantized"]})
    metric = "accuracy" if data["task"] == "classification" else "rmse"
    fval = (data["float_reference"].get("truth") or {}).get("acc" if metric == "accuracy" else "rmse")
    yield ("accuracy_size", "Task metric against size (measured)",
           f"{metric} against ground truth on the host runner of each format, against the file size; the dashed "
           f"line is the float Keras model.",
           plots.accuracy_vs_size(pts, metric, fval, foot, higher_is_better=metric == "accuracy"))


def _emulated_instructions(plots, data, foot):
    emu_rows = []
    for r in _ran(data):
        for dev, d in r["devices"].items():
            e = d.get("emulated") or {}
            if e.get("status") == "ok" and (e.get("instructions") or {}).get("split"):
                emu_rows.append({"label": f"{r['name']} @ {dev} ({e.get('core') or e.get('board')})",
                                 "split": e["instructions"]["split"],
                                 "plain": (e.get("plain_c") or {}).get("instructions_per_inference")})
    yield ("emulated_instructions", "Emulated instructions per inference (emulated)",
           "Exact instruction counts of the generated firmware in QEMU (SIMD build), split by kernel; the diamond is "
           "the plain-C build of the same model.", plots.emulated_instructions(emu_rows, foot))


def _long_stream(plots, data, foot):
    ls = ((data.get("streaming") or {}).get("long_stream") or {})
    if not ls.get("result"):
        return
    name = (ls.get("signal") or {}).get("name") or "stream"
    yield ("stream_drift", "Long-stream drift per window (measured)",
           f"int8 streaming model ({ls.get('int8_artifact')}) against the float streaming model "
           f"({ls.get('float_artifact')}) over {ls['result']['steps']:,} consecutive steps of {name}, no state reset; "
           f"RMSE per window of {ls['result']['window']} steps in LiteRT (solid) and TFLite Micro (dashed).",
           plots.stream_drift({name: ls["result"]}, foot))
    yield ("cell_state", "Cell state against the int16 cell range (measured)",
           "Per window: the float model's largest |c| (numpy, no cell clip) and the int8 model's, against the int8 "
           "model's int16 cell-state range; reaching the dashed line means the int8 state saturates.",
           plots.cell_state_range({name: ls["result"]}, foot))


def _stream_checks(plots, data, foot):
    st = (data["extras"].get("streaming") or {}).get("data")
    if not isinstance(st, dict):
        return
    runs = (st.get("drift") or {}).get("runs") if isinstance(st.get("drift"), dict) else st.get("runs")
    # its own id: beside the bench's long-stream figure, "stream_drift" would overwrite that file
    yield ("stream_check_drift", "Long-stream drift (measured)",
           f"int8 streaming model against the float streaming model over an unbroken stream "
           f"(from {data['extras']['streaming']['source']}).", plots.stream_drift(runs or {}, foot))


# In report order; each yields (id, title, caption, png | None) and None (no data) is left out.
FIGURES = (_latency_host, _latency_device, _drift_per_step, _memory, _accuracy_size, _emulated_instructions,
           _long_stream, _stream_checks)


def make_figures(data) -> list[dict]:
    """[{"id", "title", "caption", "png": bytes, "sha256"}] for the figures the data supports."""
    from edge import plots
    foot = footer(data)
    figs = [{"id": fid, "title": title, "caption": caption, "png": png}
            for build in FIGURES for fid, title, caption, png in build(plots, data, foot) if png]
    for f in figs:
        f["sha256"] = hashlib.sha256(f["png"]).hexdigest()
    return figs
