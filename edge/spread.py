"""How far the host-kernel figures move across x86 CPUs: every reference model's artifacts run on
this host and under QEMU user-mode emulation of other CPU models, side by side.

    python -m edge.spread [--artifacts artifacts] [--out reports/spread.json] [--cpus native,Haswell]
    (or `make spread`)

onnxruntime (MLAS) and LiteRT (XNNPACK) pick their int8 and float kernels from cpuid, and
`qemu-x86_64 -cpu MODEL` answers cpuid as that model would, so the same files run through other
kernels (QEMU 7.2's TCG emulates up to AVX2 + FMA: no AVX-512, no VNNI). Each runner child is the
bench's own (firmware_sim.runners), started through groundfloor.isolate with the emulator as its
launcher; its outputs are scored with groundfloor.metrics against the float model's outputs
recorded at export (the drift) and against the ground truth (the task metric).

A control shows the emulation does reach other kernels: the same float ONNX quantized with signed
int8 weights (onnxruntime's default, which the toolkit avoids) saturates on AVX2 without VNNI.

It also converts one model's tf-keras source to int8 (calibration included) on every CPU and
compares the bytes; training is not re-run. Writes reports/spread.json (every CPU's figures, the
spread of each figure: min, max, relative spread) and reports/spread.md (the table the README quotes).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edge import toolmain
from groundfloor.errors import BadInput
from groundfloor.fileio import write_json, write_npz, write_text
from groundfloor.isolate import run_isolated
from groundfloor.metrics import evaluate

QEMU = "qemu-x86_64"    # Debian package qemu-user

# name -> the QEMU CPU model (None: this host, no emulation) and what its cpuid offers the kernels
CPUS = {
    "native": {"qemu_cpu": None, "what": "this host, not emulated"},
    "EPYC-Rome": {"qemu_cpu": "EPYC-Rome", "what": "AMD EPYC (Zen 2): AVX2 + FMA, no AVX-512, no VNNI"},
    "Haswell": {"qemu_cpu": "Haswell", "what": "Intel Haswell: AVX2 + FMA, no AVX-512, no VNNI"},
    "SandyBridge": {"qemu_cpu": "SandyBridge", "what": "Intel Sandy Bridge: AVX, no AVX2, no FMA"},
}
NOT_COVERED = ("AVX-512 and VNNI only natively (QEMU 7.2's TCG emulates neither); no SSE-only CPU: under "
               "-cpu Nehalem, Westmere or qemu64 `import numpy` dies with SIGILL (an AVX instruction runs "
               "without a check), so these wheels need AVX")
HOST_KINDS = ("host",)          # runners that run on the host CPU (not an emulated microcontroller)
EMULATED_TIMEOUT_S = 1800.0
# The figures compared across CPUs, from groundfloor.metrics.evaluate's result
FIGURES = {
    "task_metric": lambda m, task: (m.get("truth") or {}).get("acc" if task == "classification" else "rmse"),
    "drift_rmse": lambda m, task: (m.get("cross") or {}).get("rmse"),
}
RATIO = ("onnx_dynamic_int8", "onnxruntime", "tflite_int8", "litert")   # the drift ratio
RATIO_LIMIT = 1.5
SIGNED_CONTROL = "onnx_dynamic_int8_signed_weights"


def launcher(cpu: str) -> list | None:
    """The command a child's Python runs under for this CPU (None: natively)."""
    model = CPUS[cpu]["qemu_cpu"]
    return None if model is None else [QEMU, "-cpu", model]


def available(cpu: str) -> tuple[bool, str]:
    if CPUS[cpu]["qemu_cpu"] is None or shutil.which(QEMU):
        return True, ""
    return False, f"{QEMU} not found (Debian package qemu-user: `make system-packages`)"


def child_cpu_probe() -> dict:
    """What the CPU this child runs on tells the kernels (cpuid), and the int8 path that implies."""
    from groundfloor.versions import cpuid_features, int8_dot_product
    feats = cpuid_features()
    return {"cpuid_features": feats, "int8_dot_product": int8_dot_product(feats)}


def child_signed_control(src: str, out_path: str) -> dict:
    """The float ONNX quantized with signed int8 weights, full range: onnxruntime's defaults."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(src, out_path, weight_type=QuantType.QInt8, reduce_range=False)
    return {"weight_type": "QInt8", "reduce_range": False}


# --------------------------------------------------------------------------- what is run

def _host_runners():
    from firmware_sim.runners import RUNNERS
    out = []
    for cls in RUNNERS.values():
        runner = cls()
        if runner.kind in HOST_KINDS and runner.available()[0]:
            out.append(runner)
    return out


def plan_model(manifest: dict, runners, streaming: bool = False) -> list[tuple[str, dict, object]]:
    """(artifact name, manifest entry, runner) for every exported artifact and host runner that applies."""
    jobs = []
    for name, art in (manifest.get("artifacts") or {}).items():
        if art.get("status", "ok") != "ok" or (art.get("streaming") and not streaming):
            continue
        for runner in runners:
            if runner.applicable(art)[0]:
                jobs.append((name, art, runner))
    return jobs


def _run_one(runner, path, x_path, out_npz, extra, cpu, n) -> tuple[np.ndarray | None, dict]:
    """One runner child on one CPU; (outputs or None, record)."""
    from firmware_sim.runners import RunConfig
    cfg = RunConfig(warmup=0, runs=0, max_samples=n, timeout_s=EMULATED_TIMEOUT_S)
    res = run_isolated(runner.target, runner.child_kwargs(path, x_path, out_npz, cfg, extra),
                       timeout=cfg.timeout_s, launcher=launcher(cpu))
    rec = {"status": res.status, "seconds": round(res.seconds, 2)}
    if not res.ok:
        rec["error"] = res.error
        return None, rec
    with np.load(out_npz) as d:
        out = np.asarray(d["out_0"])
    out_npz.unlink()
    return out, rec


def _score(out, data, task) -> dict:
    n = out.shape[0]
    y_true = data.get("y_eval")
    metrics = evaluate(out, y_float=data["y_float"][:n], y_true=None if y_true is None else y_true[:n], task=task)
    return {k: f(metrics, task) for k, f in FIGURES.items()}


# --------------------------------------------------------------------------- the spread

def spread_of(values: dict) -> dict:
    """min, max, max - min and (max - min) / |min| of one figure's value per CPU (None skipped)."""
    vals = [v for v in values.values() if v is not None]
    if not vals:
        return {"min": None, "max": None, "abs": None, "rel": None, "cpus": 0}
    lo, hi = min(vals), max(vals)
    return {"min": lo, "max": hi, "abs": hi - lo, "rel": (hi - lo) / abs(lo) if lo else None, "cpus": len(vals)}


def summarize(entry: dict) -> dict:
    """Per figure, its spread across the CPUs that ran it; and which CPUs gave outputs bit-identical to native."""
    per_cpu = entry["cpus"]
    figures = {f: spread_of({c: r.get(f) for c, r in per_cpu.items() if r.get("status") == "ok"}) for f in FIGURES}
    same = [c for c, r in per_cpu.items() if r.get("identical_to_native")]
    return {"figures": figures, "identical_to_native": same}


def drift_ratios(models: dict) -> dict:
    """Per model and CPU: onnx_dynamic_int8 drift / tflite_int8 drift, and whether it is within RATIO_LIMIT."""
    a, ra, b, rb = RATIO
    out = {}
    for m, rec in models.items():
        num = (rec["artifacts"].get(f"{a}/{ra}") or {}).get("cpus", {})
        den = (rec["artifacts"].get(f"{b}/{rb}") or {}).get("cpus", {})
        rows = {}
        for cpu in num:
            x, y = (num.get(cpu) or {}).get("drift_rmse"), (den.get(cpu) or {}).get("drift_rmse")
            if x is not None and y:
                rows[cpu] = {"onnx_dynamic_int8": x, "tflite_int8": y, "ratio": x / y, "within": x / y <= RATIO_LIMIT}
        if rows:
            out[m] = rows
    return out


def max_rel_spread(models: dict) -> dict:
    """Over every model: the largest relative spread of each figure, and where it is."""
    best = {}
    for m, rec in models.items():
        for key, entry in rec["artifacts"].items():
            for fig, s in (entry.get("summary") or {}).get("figures", {}).items():
                if s["rel"] is not None and (fig not in best or s["rel"] > best[fig]["rel"]):
                    best[fig] = {"rel": s["rel"], "abs": s["abs"], "where": f"{m} {key}"}
    return best


def spread_by_artifact(models: dict, keys=None) -> dict:
    """Per "artifact/runner" over every model: the largest relative spread of the task metric, the
    largest absolute spread of the drift RMSE (a relative one of a near-zero float drift says little),
    and whether every CPU gave outputs bit-identical to native on every model."""
    out = {}
    for rec in models.values():
        for key, e in {**rec["artifacts"], **rec["controls"]}.items():
            if "summary" not in e or (keys is not None and key not in keys):
                continue
            f = e["summary"]["figures"]
            row = out.setdefault(key, {"task_metric_rel": 0.0, "drift_rmse_abs": 0.0, "identical": True})
            row["task_metric_rel"] = max(row["task_metric_rel"], f["task_metric"]["rel"] or 0.0)
            row["drift_rmse_abs"] = max(row["drift_rmse_abs"], f["drift_rmse"]["abs"] or 0.0)
            row["identical"] &= set(e["summary"]["identical_to_native"]) == set(e["cpus"])
    return out


HOST_BOUND_REL = 0.05    # a task metric that moves more than this across CPUs holds only for its CPU


def pct(rel) -> str:
    """A relative spread as people read it: 0.0032%, 1.5%, 2,040%."""
    if rel is None:
        return "n/a"
    if rel < 1e-5:
        return "<0.001%"
    return f"{100 * rel:,.0f}%" if rel >= 0.1 else f"{100 * rel:.2g}%"


# --------------------------------------------------------------------------- measuring

def probe_cpus(cpus) -> dict:
    """Each CPU's record: what it is, whether it can run here, and what its cpuid tells the kernels."""
    out = {}
    for cpu in cpus:
        ok, why = available(cpu)
        rec = {"qemu_cpu": CPUS[cpu]["qemu_cpu"], "what": CPUS[cpu]["what"], "status": "ok" if ok else "skipped"}
        if not ok:
            out[cpu] = {**rec, "reason": why}
            continue
        res = run_isolated("edge.spread:child_cpu_probe", {}, timeout=300, launcher=launcher(cpu))
        out[cpu] = {**rec, **(res.value or {})} if res.ok else {**rec, "status": res.status, "error": res.error}
    return out


def _compare(per_cpu: dict, outs: dict):
    """Mark each CPU's outputs as bit-identical to native or not, with the largest difference."""
    ref = outs.get("native")
    for cpu, out in outs.items():
        if ref is not None and out is not None and out.shape == ref.shape:
            per_cpu[cpu]["identical_to_native"] = bool(np.array_equal(out, ref))
            per_cpu[cpu]["max_abs_vs_native"] = float(np.max(np.abs(out.astype(np.float64) - ref)))


def measure_entry(runner, path, x_path, extra, cpus, data, task, n, tmp: Path) -> dict:
    """One artifact in one runner on every CPU: figures per CPU, bit identity to native, the spread."""
    per_cpu, outs = {}, {}
    for cpu in cpus:
        out, rec = _run_one(runner, path, x_path, tmp / f"out_{cpu}.npz", extra, cpu, n)
        if out is not None:
            rec.update(_score(out, data, task))
        per_cpu[cpu], outs[cpu] = rec, out
    _compare(per_cpu, outs)
    entry = {"file": Path(path).name, "runner": runner.name, "n_windows": n, "cpus": per_cpu}
    entry["summary"] = summarize(entry)
    return entry


def _prepared(runner, path, art, x_path, progress) -> tuple[dict | None, str]:
    """What the runner measures before its run (TFLite Micro: the arena, natively and cached)."""
    from firmware_sim.bench import default_cache_dir
    from firmware_sim.runners import RunConfig
    from groundfloor.fileio import sha256_file
    extra = {"artifact": art, "sha256": sha256_file(path), "cache_dir": str(default_cache_dir())}
    figures, failed = runner.prepare(path, x_path, RunConfig(), extra, lambda *_: None)
    if failed is not None:
        return None, failed.get("error", "prepare failed")
    return {**extra, **figures}, ""


def _load(artifacts_dir: Path):
    from firmware_sim.bench import (
        _load_inputs,  # the bench's own checks of manifest and data.npz
    )
    manifest, data, _ = _load_inputs(artifacts_dir)
    return manifest, data


def measure_model(artifacts_dir: Path, cpus, max_windows=None, streaming=False, progress=print) -> dict:
    manifest, data = _load(artifacts_dir)
    task = manifest.get("task") or "regression"
    x = data["x_eval"][:max_windows] if max_windows else data["x_eval"]
    n = int(x.shape[0])
    rec = {"task": task, "n_windows": n, "artifacts": {}, "controls": {}}
    with tempfile.TemporaryDirectory(prefix="edge-spread-") as tmp:
        tmp = Path(tmp)
        x_path = tmp / "x.npz"
        write_npz(x_path, x=x.astype(np.float32))
        for name, art, runner in plan_model(manifest, _host_runners(), streaming):
            path = artifacts_dir / art["file"]
            key = f"{name}/{runner.name}"
            extra, why = _prepared(runner, path, art, x_path, progress)
            if extra is None:   # as in the bench: e.g. TFLite Micro cannot allocate the unrolled model
                rec["artifacts"][key] = {"file": art["file"], "runner": runner.name, "status": "failed", "error": why}
                continue
            t0 = time.perf_counter()
            rec["artifacts"][key] = measure_entry(runner, path, x_path, extra, cpus, data, task, n, tmp)
            progress(f"[spread] {artifacts_dir.name} {key}: {time.perf_counter() - t0:.0f} s")
        rec["controls"] = _signed_control(artifacts_dir, manifest, cpus, data, task, n, x_path, tmp, progress)
    return rec


def _signed_control(artifacts_dir, manifest, cpus, data, task, n, x_path, tmp, progress) -> dict:
    """The float ONNX with signed int8 weights on every CPU, and the saturation check's verdict on it
    and on the shipped dynamic int8 file: proof that the emulated CPUs reach other int8 kernels."""
    from firmware_sim.runners import get_runner
    src = (manifest.get("artifacts") or {}).get("onnx_float32") or {}
    if src.get("status", "ok") != "ok" or not (artifacts_dir / str(src.get("file"))).is_file():
        return {}
    signed = tmp / "signed_weights.onnx"
    made = run_isolated("edge.spread:child_signed_control",
                        {"src": str(artifacts_dir / src["file"]), "out_path": str(signed)}, timeout=300)
    if not made.ok:
        return {SIGNED_CONTROL: {"status": made.status, "error": made.error}}
    entry = measure_entry(get_runner("onnxruntime"), signed, x_path, {}, cpus, data, task, n, tmp)
    entry.update(file=None, options=made.value, saturation_check=_at_risk(signed))
    shipped = (manifest.get("artifacts") or {}).get("onnx_dynamic_int8") or {}
    if shipped.get("file"):
        entry["shipped_saturation_check"] = _at_risk(artifacts_dir / shipped["file"])
    progress(f"[spread] {artifacts_dir.name} {SIGNED_CONTROL}: done")
    return {SIGNED_CONTROL: entry}


def _at_risk(path) -> bool | None:
    """export.ort_saturation's verdict (worst case over inputs), in a child: it loads the file."""
    res = run_isolated("export.ort_saturation:check", {"path": str(path)}, timeout=300)
    return res.value.get("at_risk") if res.ok else None


def conversion_check(artifacts_dir: Path, cpus, artifact="tflite_int8", progress=print) -> dict:
    """The export's own int8 conversion and calibration of the same float model (the tf-keras source
    in artifacts/<model>/) on every CPU: whether the .tflite bytes are the same. Training itself is
    not re-run (about 72 s natively, far longer emulated)."""
    from export.pipeline import ARTIFACTS, DATA_FILE, SOURCE_FILE
    from groundfloor.fileio import sha256_file
    spec = ARTIFACTS[artifact]
    if not (artifacts_dir / SOURCE_FILE).is_file():
        return {"status": "skipped", "reason": f"no {SOURCE_FILE} in {artifacts_dir}"}
    out = {"model": artifacts_dir.name, "artifact": artifact, "mode": spec.mode, "cpus": {}}
    with tempfile.TemporaryDirectory(prefix="edge-spread-conv-") as tmp:
        for cpu in cpus:
            path = Path(tmp) / f"{cpu}.tflite"
            kwargs = dict(spec.kwargs, out_path=str(path), model_path=str(artifacts_dir / SOURCE_FILE),
                          calib_path=str(artifacts_dir / DATA_FILE))
            res = run_isolated(spec.target, kwargs, timeout=EMULATED_TIMEOUT_S, launcher=launcher(cpu))
            rec = {"status": res.status, "seconds": round(res.seconds, 1)}
            if res.ok and path.is_file():
                rec["sha256"] = sha256_file(path)
            else:
                rec["error"] = res.error or "no file written"
            out["cpus"][cpu] = rec
            progress(f"[spread] {artifacts_dir.name} {artifact} conversion on {cpu}: {rec['status']}")
    shas = {r.get("sha256") for r in out["cpus"].values()}
    out["byte_identical"] = len(shas) == 1 and None not in shas
    return out


# --------------------------------------------------------------------------- the report

def measure(artifacts: Path, cpus=None, models=None, max_windows=None, streaming=False, progress=print,
            convert=True) -> dict:
    """The spread report over every model in `artifacts` (or the named ones) with a manifest; convert:
    also the int8 conversion check (conversion_check) on the first model."""
    cpus = list(cpus or CPUS)
    unknown = [c for c in cpus if c not in CPUS]
    if unknown:
        raise BadInput(None, f"unknown CPU {', '.join(unknown)}; known: {', '.join(CPUS)}")
    if "native" not in cpus:
        cpus.insert(0, "native")     # the reference the others are compared with
    names = models or sorted(p.parent.name for p in Path(artifacts).glob("*/manifest.json"))
    if not names:
        raise BadInput(artifacts, "no artifacts/<model>/manifest.json (run `make export` first)")
    from groundfloor.versions import machine, tool_versions
    t0 = time.perf_counter()
    probes = probe_cpus(cpus)
    runnable = [c for c in cpus if probes[c].get("status") == "ok"]
    report = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
              "tool_versions": tool_versions(), "emulator": _emulator_version(), "cpus": probes,
              "not_covered": NOT_COVERED, "models": {}}
    for m in names:
        progress(f"[spread] {m} on {', '.join(runnable)}")
        report["models"][m] = measure_model(Path(artifacts) / m, runnable, max_windows, streaming, progress)
    first = Path(artifacts) / names[0]
    report["conversion"] = conversion_check(first, runnable, progress=progress) if convert else {"status": "skipped"}
    report["drift_ratio"] = {"of": f"{RATIO[0]} ({RATIO[1]}) / {RATIO[2]} ({RATIO[3]}) drift RMSE",
                             "limit": RATIO_LIMIT, "models": drift_ratios(report["models"])}
    report["max_rel_spread"] = max_rel_spread(report["models"])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _emulator_version() -> str | None:
    import subprocess
    if not shutil.which(QEMU):
        return None
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    return out.splitlines()[0] if out else None


def _g(v, digits=4):
    return "n/a" if v is None else f"{v:.{digits}g}"


def _range(s: dict) -> str:
    if s["min"] is None:
        return "n/a"
    rel = "" if s["rel"] is None else f" ({pct(s['rel'])})"
    return f"{_g(s['min'])}" if s["abs"] == 0 else f"{_g(s['min'])} - {_g(s['max'])}{rel}"


def table_lines(report: dict, keys=None) -> list[str]:
    """Markdown: per figure its min - max across the CPUs (relative spread), then the drift ratio.
    keys: the "artifact/runner" entries (and controls) to show (None: all)."""
    cpus = [c for c, p in report["cpus"].items() if p.get("status") == "ok"]
    rows = [f"CPUs: {', '.join(cpus)} (all but native emulated by {report.get('emulator') or 'QEMU'}); "
            f"not covered: {report['not_covered']}.", "",
            "| model | artifact (runner) | windows | task metric, min - max (spread) | "
            "drift RMSE, min - max (spread) | outputs bit-identical to native on |", "|---|---|---|---|---|---|"]
    for m, rec in report["models"].items():
        metric = "accuracy" if rec["task"] == "classification" else "RMSE"
        for key, e in {**rec["artifacts"], **rec["controls"]}.items():
            if keys is not None and key not in keys:
                continue
            label = f"{key.split('/')[0]} ({e.get('runner', '')})"
            if "summary" not in e:
                rows.append(f"| {m} | {label} | | not run: {e.get('error', '')} | | |")
                continue
            f = e["summary"]["figures"]
            same = [c for c in e["summary"]["identical_to_native"] if c != "native"]
            rows.append(f"| {m} | {label} | {e['n_windows']} | {metric} {_range(f['task_metric'])} | "
                        f"{_range(f['drift_rmse'])} | {', '.join(same) or 'none'} |")
    conv = report.get("conversion") or {}
    if conv.get("cpus"):
        each = ", ".join(f"{c} ({r.get('sha256', r.get('error', ''))[:12]})" for c, r in conv["cpus"].items())
        rows += ["", f"{conv['artifact']} conversion and calibration of {conv['model']}'s float model, per CPU: "
                 + ("byte-identical .tflite on " if conv["byte_identical"] else "the bytes differ: ") + each
                 + ". Training itself is not re-run under emulation."]
    ratio = report.get("drift_ratio") or {}
    rows += ["", f"{ratio.get('of', 'drift ratio')} per CPU (limit {ratio.get('limit')}):", "",
             "| model | " + " | ".join(cpus) + " |", "|---|" + "---|" * len(cpus)]
    for m, per_cpu in (ratio.get("models") or {}).items():
        cells = [f"{_g(r['onnx_dynamic_int8'], 3)} / {_g(r['tflite_int8'], 3)} = {r['ratio']:.2f}x"
                 if (r := per_cpu.get(c)) else "n/a" for c in cpus]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return rows


def measure_and_write(artifacts: Path, out: Path, models=None, cpus=None, max_windows=None, streaming=False,
                      no_conversion=False) -> int:
    """measure() with the command line's options (models, cpus: comma-separated), the report written to
    out and its table to out's .md beside it."""
    report = measure(artifacts, cpus.split(",") if cpus else None, models.split(",") if models else None,
                     max_windows, streaming, convert=not no_conversion)
    write_json(out, report)
    lines = table_lines(report)
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out} and {out.with_suffix('.md')} ({report['seconds']:.0f} s)")
    return 0


def main(argv=None) -> int:
    p = toolmain.parser("spread", __doc__, artifacts=True, out="reports/spread.json")
    p.add_argument("--models", help="comma-separated (default: every model with a manifest)")
    p.add_argument("--cpus", help=f"comma-separated, of {', '.join(CPUS)} (default: all)")
    p.add_argument("--max-windows", type=int, help="the first N evaluation windows only (default: all)")
    p.add_argument("--streaming", action="store_true", help="the one-step stream artifacts too (slow)")
    p.add_argument("--no-conversion", action="store_true", help="skip the int8 conversion check (minutes emulated)")
    return toolmain.run(p, argv, measure_and_write)


if __name__ == "__main__":
    raise SystemExit(main())
