"""`edge check`: the CI gate. Budgets from the config (edge/budgets.py: keys, sections, how each is
measured), judged against reports/<model>/bench.json.

Exceeded budgets print as FAIL and make `edge check` exit 1; a JUnit XML file (one testcase
per model x artifact x budget) goes to reports/check.xml (--junit). Bad budgets or missing bench
results are a BadInput (exit 2).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from edge.budgets import Row, budgets_from_config, evaluate_model, fmt
from edge.options import add_models, names
from edge.policy import best_per_device
from groundfloor.errors import BadInput


# --------------------------------------------------------------------------- inputs

def load_bench(config, model: str):
    """(bench dict, path) for a model; BadInput when there are no bench results."""
    from groundfloor.fileio import read_json_doc
    path = Path(config.reports_dir) / model / "bench.json"
    if not path.is_file():
        raise BadInput(path, f"no bench results for model '{model}' (run `edge bench --models {model}` first)")
    return read_json_doc(path, "bench results", "artifacts", " (re-run `edge bench`)", plural=True), path


def load_manifest(config, model: str, bench: dict | None = None):
    """(manifest dict | None, path | None): artifacts/<model>/manifest.json, else the bench's artifacts_dir."""
    from groundfloor.fileio import read_json_doc
    cands = [Path(config.artifacts_dir) / model / "manifest.json"]
    if bench and bench.get("artifacts_dir"):
        cands.append(Path(bench["artifacts_dir"]) / "manifest.json")
    for p in cands:
        if p.is_file():
            return read_json_doc(p, "manifest"), p
    return None, None


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

def _limit(r: Row) -> str:
    return "fits" if r.budget == "must_fit" else f"{fmt(r.limit)} {r.unit}".strip()


def format_table(rows: list[Row]) -> str:
    head = ["model", "artifact", "device", "budget", "limit", "measured", "result", "detail"]
    body = []
    for r in rows:
        limit = _limit(r)
        meas = fmt(r.measured, r.budget)
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
            meas = r.detail if r.budget == "must_fit" else f"{fmt(r.measured)} {r.unit}".strip()
            msg = f"{r.budget}: measured {meas}, budget {_limit(r)}" + (f" ({r.detail})" if r.detail and
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
    best: dict = field(default_factory=dict)   # model -> device -> the best choice (edge.policy)

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
    rows, sources, best = [], {}, {}
    for name, bench, bpath, manifest in loaded:
        devs = bench_devices(bench, devices, getattr(config, "devices", None), bpath)
        rows += evaluate_model(name, bench, manifest, budgets, devs)
        best[name] = best_per_device(bench, devs, evaluate_model(name, bench, manifest, budgets, devs,
                                                                 all_artifacts=True))
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
    return CheckResult(rows, junit_path, best)


def cmd_check(args):
    from edge.config import load_config
    cfg = load_config(args.config)
    res = run_check(cfg, names(args.models), names(args.devices), junit=args.junit,
                    progress=lambda m: print(m, flush=True))
    return 1 if res.failed else 0


def add_check_parser(subparsers):
    s = subparsers.add_parser("check", help="the CI gate: budgets from the config, JUnit XML, exit 1 when exceeded")
    add_models(s)
    s.add_argument("--devices", help="comma-separated device names (default: the config's devices that were benched)")
    s.add_argument("--junit", help="JUnit XML output (default: <reports_dir>/check.xml)")
    s.set_defaults(func=cmd_check)
    return s
