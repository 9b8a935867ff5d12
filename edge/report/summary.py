"""The summary across models (reports/summary.*): its data, from each model's report data, and
its blocks (rendered by render_md / render_html like a model report)."""
from __future__ import annotations

from edge.policy import BEST_RULE
from edge.report.collect import SCHEMA, utc_now
from edge.report.fmt import Table, fmt_bytes, fmt_num, fmt_us


def summary_data(datas: list[dict], config) -> dict:
    devices = list(dict.fromkeys(d for data in datas for d in data["devices"]))
    models = {}
    for data in datas:
        gate = data["budgets"]["gate"]
        models[data["model"]] = {
            "task": data["task"], "report": f"{data['model']}/report.html",
            "bench_sha256": data["sources"]["bench"]["sha256"],
            "float_reference": {k: data["float_reference"].get(k) for k in ("metric", "value", "units")},
            "artifacts": {r["name"]: {"format": r["format"], "mode": r["mode"], "quantized": r["quantized"],
                                      "bytes": r.get("bytes"), "status": r["status"], "streaming": r["streaming"],
                                      "devices": {d: {"verdict": v["verdict"], "budgets_ok": v.get("budgets_ok"),
                                                      "latency_estimated_us": v["latency_estimated_us"],
                                                      "latency_emulated_us": v["latency_emulated_us"]}
                                                  for d, v in r["devices"].items()}}
                          for r in data["artifacts"]},
            "best": data["best"],
            "gate": {"checks": len(gate), "failed": sum(g["status"] == "fail" for g in gate),
                     "skipped": sum(g["status"] == "skip" for g in gate)},
            "warnings": data["warnings"]}
    return {"schema": SCHEMA, "kind": "lstm-edge summary",
            "created": utc_now(),
            "config": str(getattr(config, "path", "")), "devices": devices, "best_rule": BEST_RULE,
            "models": models}


def summary_blocks(s):
    b = [("p", "Best choice per model and device, by this rule: " + s["best_rule"])]
    t = Table(["model"] + s["devices"])
    for m, info in s["models"].items():
        cells = []
        for d in s["devices"]:
            best = info["best"].get(d)
            if best is None:
                cells.append("not benched")
            elif best.get("artifact"):
                cells.append(f"{best['artifact']} ({fmt_bytes(best['bytes'])}, {fmt_us(best.get('latency_us'))}, "
                             f"on {'/'.join(best.get('runtimes') or ['?'])})")
            else:
                cells.append("none qualifies")
        t.add([m] + cells)
    b.append(("table", t))
    t = Table(["model", "task", "float reference", "artifacts (ok / total)", "fit (artifact x device)",
               "budget checks", "report"])
    for m, info in s["models"].items():
        arts = info["artifacts"]
        ok = sum(a["status"] == "ok" for a in arts.values())
        fits = sum(v["verdict"] == "fits" for a in arts.values() for v in a["devices"].values())
        total = sum(len(a["devices"]) for a in arts.values())
        g = info["gate"]
        fr = info["float_reference"]
        t.add([m, info["task"], f"{fr.get('metric')} {fmt_num(fr.get('value'))} {fr.get('units') or ''}".strip(),
               f"{ok} / {len(arts)}", f"{fits} / {total}",
               f"{g['checks'] - g['failed'] - g['skipped']} pass, {g['failed']} fail, {g['skipped']} skip",
               info["report"]])
    b.append(("h2", "Models"))
    b.append(("table", t))
    for m, info in s["models"].items():
        for w in info["warnings"]:
            b.append(("warn", f"{m}: {w}"))
    return b

