"""Writing the reports: per model report.md, report.html, report.json and figures/*.png; across
models summary.md, summary.html, summary.json."""
from __future__ import annotations

from pathlib import Path

from edge.budgets import budgets_from_config
from edge.check import load_bench
from edge.report import render_html, render_md
from edge.report.collect import collect
from edge.report.figures import make_figures
from edge.report.sections import sections
from edge.report.summary import summary_blocks, summary_data


def write_model_report(config, model, budgets=None, progress=print) -> tuple[list[Path], dict]:
    from groundfloor.fileio import write_bytes, write_json, write_text
    data = collect(config, model, budgets)
    out = Path(config.reports_dir) / model
    figures = make_figures(data)
    paths = []
    for f in figures:
        paths.append(write_bytes(out / "figures" / f"{f['id']}.png", f["png"]))
    data["figures"] = [{"id": f["id"], "title": f["title"], "caption": f["caption"],
                        "file": f"figures/{f['id']}.png", "sha256": f["sha256"]} for f in figures]
    blocks = sections(data, figures)
    md = write_text(out / "report.md", render_md.report(data, blocks))
    ht = write_text(out / "report.html", render_html.report(data, blocks))
    js = write_json(out / "report.json", data)
    progress(f"[report] {model}: {md}, {ht}, {js} ({len(figures)} figures)")
    return [md, ht, js], data


def make_reports(config, model_names=None, progress=print) -> list[Path]:
    """Write every selected model's report and the summary; return the paths written.
    A model without bench results is BadInput (checked before anything is written)."""
    from groundfloor.fileio import write_json, write_text
    progress = progress or (lambda *_: None)
    entries = config.select(model_names)
    benches = {m.name: load_bench(config, m.name)[0] for m in entries}   # BadInput early
    devs = {d for b in benches.values() for d in (b.get("devices") or {})}
    budgets = budgets_from_config(config, extra_devices=devs)
    paths, datas = [], []
    for m in entries:
        p, data = write_model_report(config, m.name, budgets, progress)
        paths += p
        datas.append(data)
    s = summary_data(datas, config)
    blocks = summary_blocks(s)
    root = Path(config.reports_dir)
    paths.append(write_text(root / "summary.md", render_md.summary(s, blocks)))
    paths.append(write_text(root / "summary.html", render_html.summary(s, blocks)))
    paths.append(write_json(root / "summary.json", s))
    progress(f"[report] summary: {root / 'summary.md'}, {root / 'summary.html'}")
    return paths
