"""`edge report` on a small fake-but-schema-valid manifest + bench.json (docs/CONTRACTS.md and the
bench.json docstring in firmware_sim/bench.py): files, table rows, honesty about quantization,
the best-choice rule, optional sections only when their data is there, bad input."""
import base64
import copy
import json
import re
from pathlib import Path

import pytest

import edge.cli
from edge.check import add_check_parser
from edge.config import load_config
from edge.report import add_report_parser, make_reports
from groundfloor.fileio import sha256_file, write_json

DEVICES = {
    "cortex_m4f": {"name": "cortex_m4f", "core": "cortex-m4f", "device_class": "mcu", "clock_hz": 80_000_000,
                   "sram_bytes": 262_144, "flash_bytes": 1_048_576, "runtime_flash_bytes": 65_536,
                   "runtime_sram_bytes": 16_384, "description": "Cortex-M4F @ 80 MHz"},
    "cortex_m7": {"name": "cortex_m7", "core": "cortex-m7", "device_class": "mcu", "clock_hz": 480_000_000,
                  "sram_bytes": 1_048_576, "flash_bytes": 2_097_152, "runtime_flash_bytes": 65_536,
                  "runtime_sram_bytes": 32_768, "description": "Cortex-M7 @ 480 MHz"},
}
# name: (file, format, mode, quantized, streaming, bytes, ram, host p50 us, drift rmse, truth rmse, notes)
ARTIFACTS = {
    "tflite_float32": ("model_float32.tflite", "tflite", "float32", False, False, 20616, 7000, 51.0, 6e-6, 0.5888, []),
    "tflite_dynamic": ("model_dynamic.tflite", "tflite", "dynamic", False, False, 20616, 7000, 54.0, 6e-6, 0.5888,
                       ["NOT QUANTIZED: the weights stayed float ({'float32': 17540}); this file is a float model"]),
    "tflite_int8": ("model_int8.tflite", "tflite", "int8", True, False, 8944, 4480, 427.0, 0.196, 0.6471, []),
    "onnx_float32": ("model_float32.onnx", "onnx", "float32", False, False, 19760, 13400, 26.0, 2.4e-6, 0.5888, []),
    "onnx_dynamic_int8": ("model_dynamic_int8.onnx", "onnx", "dynamic_int8", True, False, 8943, 13500, 31.0,
                          0.0332, 0.5871, []),
}
STREAM = ("stream_int8", ("model_stream_int8.tflite", "tflite", "int8", True, True, 8900, 4400, 9.0, 0.2, 0.65, []))
# estimated device latency (us) per artifact: cortex_m4f, cortex_m7
LATENCY = {"tflite_float32": (11830.0, 1070.0), "tflite_dynamic": (11830.0, 1070.0), "tflite_int8": (8026.0, 773.0),
           "onnx_float32": (11900.0, 1080.0), "onnx_dynamic_int8": (8228.0, 798.0), "stream_int8": (8100.0, 780.0)}
FLOAT_RMSE = 0.5888


def _stats(p50):
    return {"kind": "measured", "unit": "us", "per": "invoke", "n": 24, "p50": p50, "p90": p50 * 1.1,
            "p99": p50 * 4, "mean": p50 * 1.3, "std": p50 * 0.5, "min": p50 * 0.98, "max": p50 * 8}


def _metrics(drift, truth_rmse, per_step=False):
    cross = {"n": 24, "rmse": drift, "mae": drift * 0.6, "max_abs": drift * 5, "l2r": drift / 40,
             "mean_err": 0.0, "std_err": drift, "nse": 1 - drift, "cos": 1.0}
    if per_step:
        cross["per_step"] = {"rmse": [drift * (1 + 0.1 * i) for i in range(6)],
                             "max_abs": [drift * 4 * (1 + 0.1 * i) for i in range(6)]}
    truth = {"n": 24, "rmse": truth_rmse, "mae": truth_rmse * 0.8, "max_abs": truth_rmse * 3, "l2r": 0.01,
             "mean_err": -0.1, "std_err": truth_rmse, "nse": 0.97, "cos": 0.999}
    return {"cross": cross, "truth": truth}


def _fit(model_bytes, ram, dev, ram_fits=True):
    d = DEVICES[dev]
    fneed = model_bytes + d["runtime_flash_bytes"]
    rneed = ram + d["runtime_sram_bytes"] if ram_fits else d["sram_bytes"] + 1
    line = lambda need, budget: {"need": need, "budget": budget, "margin": budget - need,  # noqa: E731
                                 "margin_pct": round(100 * (budget - need) / budget, 2), "fits": need <= budget,
                                 "kind": "estimated", "basis": "model file (measured) + runtime reserve (assumption)",
                                 "parts": {}}
    fl, rm = line(fneed, d["flash_bytes"]), line(rneed, d["sram_bytes"])
    fits = fl["fits"] and rm["fits"]
    return {"flash": fl, "ram": rm, "fits": fits, "verdict": "fits" if fits else "does not fit"}


def make_fake(tmp_path: Path, *, streaming=False, emulated=False, per_step=False, big_float=False,
              budgets: str = "", with_bench=True, quant_search=False) -> Path:
    """artifacts/tiny/manifest.json + reports/tiny/bench.json and a config; returns the config path.
    big_float: the float artifacts do not fit the Cortex-M4F's RAM."""
    art_dir, rep_dir = tmp_path / "artifacts" / "tiny", tmp_path / "reports" / "tiny"
    art_dir.mkdir(parents=True, exist_ok=True)
    arts = dict(ARTIFACTS)
    if streaming:
        arts[STREAM[0]] = STREAM[1]
    manifest = {"schema": 1, "model": "tiny", "task": "regression", "created": "2026-11-25T08:10:00+00:00",
                "tool_versions": {"lstm-edge": "0.1.0", "tensorflow-cpu": "2.21.0"},
                "source": {"path": "source_tfkeras.h5", "sha256": "0" * 64, "format": "tf_keras_h5",
                           "rebuilt_in_tf_keras": False, "rebuild_max_abs_diff": 0.0,
                           "input_shape": [1, 6, 1], "output_shape": [1, 6], "params": 100, "lint": [],
                           "units": "degF"},
                "data": {"file": "data.npz", "sha256": "1" * 64, "calib_samples": 32, "eval_samples": 24},
                "float_metric": {"name": "rmse", "value": FLOAT_RMSE}, "artifacts": {}}
    for name, (f, fmt, mode, q, st, nbytes, ram, p50, drift, trmse, notes) in arts.items():
        manifest["artifacts"][name] = {"file": f, "format": fmt, "mode": mode, "quantized": q, "streaming": st,
                                       "status": "ok", "error": "", "bytes": nbytes, "sha256": "2" * 64,
                                       "ops": [], "weight_bytes_by_dtype": {}, "notes": list(notes)}
    if quant_search:
        manifest["quantization_search"] = {
            "met": True, "reason": "int8_default is the first (cheapest) candidate within budget",
            "candidates": [{"name": "int8_default", "kind": "tflite_int8", "status": "ok", "bytes": 8944,
                            "metric": {"name": "rmse", "value": 0.6471}, "change": 0.099, "meets_budget": True},
                           {"name": "float32", "kind": "tflite_float", "status": "ok", "bytes": 20616,
                            "metric": {"name": "rmse", "value": 0.5888}, "change": 0.0, "meets_budget": True}]}
    write_json(art_dir / "manifest.json", manifest)
    if with_bench:
        bench = {"schema": 1, "model": "tiny", "task": "regression", "created": "2026-11-25T08:15:46+00:00",
                 "seconds": 1.0, "artifacts_dir": str(art_dir), "manifest_sha256": sha256_file(art_dir / "manifest.json"),
                 "data_sha256": "1" * 64,
                 "machine": {"platform": "Linux-test", "machine": "x86_64", "cpu": "Test CPU", "cores_logical": 2,
                             "cores_usable": 2, "ram_bytes": 8 << 30, "python": "3.11.7"},
                 "tool_versions": {"lstm-edge": "0.1.0", "numpy": "2.4.6", "tflite-runtime": None},
                 "config": {"warmup": 2, "runs": 24, "timeout_s": 60.0, "max_samples": None, "reset_state": True,
                            "runners": ["litert", "onnxruntime", "tflm"], "n_samples": 24},
                 "devices": copy.deepcopy(DEVICES),
                 "float_reference": {"float_metric": {"name": "rmse", "value": FLOAT_RMSE},
                                     "truth": {"n": 24, "rmse": FLOAT_RMSE, "mae": 0.49, "max_abs": 1.58}},
                 "artifacts": {}, "errors": []}
        for name, (f, fmt, mode, q, st, nbytes, ram, p50, drift, trmse, notes) in arts.items():
            host = "litert" if fmt == "tflite" else "onnxruntime"
            runners = {host: {"runner": host, "runner_kind": "host", "status": "ok", "error": "", "seconds": 1.0,
                              "peak_rss_bytes": {"value": 50_000_000, "kind": "measured"},
                              "latency_host": _stats(p50), "metrics": _metrics(drift, trmse, per_step and q)}}
            if fmt == "tflite":   # TFLite Micro runs every .tflite here: the microcontroller profiles count on it
                runners["tflm"] = {"runner": "tflm", "runner_kind": "host", "status": "ok", "error": "",
                                   "latency_host": _stats(p50 * 0.6), "metrics": _metrics(drift * 0.99, trmse),
                                   "arena": {"status": "ok", "min_arena_bytes": ram, "kind": "measured"}}
            runners["tflite_runtime"] = {"status": "skipped", "reason": "tflite_runtime is not installed",
                                         "runner_kind": "host"}
            devs = {}
            for i, dev in enumerate(DEVICES):
                ram_fits = not (big_float and not q and dev == "cortex_m4f")
                devs[dev] = {"latency": {"kind": "estimated", "unit": "us", "value": LATENCY[name][i],
                                         "cycles": int(LATENCY[name][i] * DEVICES[dev]["clock_hz"] / 1e6),
                                         "method": "cost model", "per_op": []},
                             "latency_emulated": None, "fit": _fit(nbytes, ram, dev, ram_fits)}
                if emulated and name == "tflite_int8":
                    devs[dev]["latency_emulated"] = {"kind": "emulated", "unit": "us", "value": LATENCY[name][i] * 1.2,
                                                     "instructions": 500_000, "method": "qemu instruction count"}
            bench["artifacts"][name] = {
                "file": f, "format": fmt, "mode": mode, "quantized": q, "streaming": st, "bytes": nbytes,
                "sha256": "2" * 64, "status": "ok", "error": "", "notes": [],
                "analysis": {"status": "ok", "error": "", "ops": 3, "macs": 1000, "steps": 6,
                             "invokes_per_window": 6 if st else 1},
                "memory": {"model_bytes": {"value": nbytes, "kind": "measured"},
                           "ram_total_bytes": {"value": ram, "kind": "measured" if q else "estimated", "note": ""},
                           "weight_bytes_by_dtype": {"int8" if q else "float32": nbytes // 2}},
                "runners": runners, "devices": devs}
        write_json(rep_dir / "bench.json", bench)
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'artifacts_dir = "{tmp_path / "artifacts"}"\nreports_dir = "{tmp_path / "reports"}"\n'
                   f'devices = ["cortex_m4f", "cortex_m7"]\n'
                   f'[models.tiny]\npath = "tiny.h5"\ndata = "tiny.npz"\nkind = "regression"\n' + budgets)
    return cfg


def run_edge(argv, capsys=None):
    """edge.cli.main with the report/check subcommands registered (the lead wires them in cli.py)."""
    names = {getattr(f, "__name__", "") for f in edge.cli._EXTRA_COMMANDS}
    parser = edge.cli.build_parser()
    have = set(parser._subparsers._group_actions[0].choices)
    added = []
    for cmd, reg in (("report", add_report_parser), ("check", add_check_parser)):
        if cmd not in have and reg.__name__ not in names:
            edge.cli._EXTRA_COMMANDS.append(reg)
            added.append(reg)
    try:
        return edge.cli.main([str(a) for a in argv])
    finally:
        for reg in added:
            edge.cli._EXTRA_COMMANDS.remove(reg)


def md_rows(md: str, first_cell: str) -> list[list[str]]:
    rows = []
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0].replace("*", "").replace("★", "").strip() == first_cell:
                rows.append(cells)
    return rows


def test_report_files_and_tables(tmp_path):
    cfg = make_fake(tmp_path)
    paths = make_reports(load_config(cfg), progress=None)
    rep = tmp_path / "reports"
    for p in ("tiny/report.md", "tiny/report.html", "tiny/report.json", "summary.md", "summary.html", "summary.json"):
        assert (rep / p).is_file(), p
        assert rep / p in paths
    md = (rep / "tiny" / "report.md").read_text()
    assert len(md) < 65536  # fits a pull-request comment
    # every artifact side by side, float and int8 of one format in adjacent rows
    table = [line for line in md.splitlines() if line.startswith("| ") and "| tflite |" in line or "| onnx |" in line]
    order = [re.sub(r"[*★ ]", "", line.split("|")[1]) for line in table][:5]
    assert order == ["tflite_float32", "tflite_dynamic", "tflite_int8", "onnx_float32", "onnx_dynamic_int8"]
    row = md_rows(md, "tflite_int8")[0]
    assert row[1:5] == ["tflite", "int8", "yes", "8.7 KiB"]
    assert "427 µs" in row[6] and "(litert)" in row[6]
    dyn = md_rows(md, "tflite_dynamic")[0]
    assert dyn[3].startswith("NO: float file")       # a float file never presented as quantized
    assert "+9.9 %" in row[8]                           # task rmse change vs float
    # the best-choice rule is stated; devices table present; host/device labelling
    assert "Best choice" in md and "smallest artifact" in md
    assert "est." in md_rows(md, "tflite_int8")[1][1]
    data = json.loads((rep / "tiny" / "report.json").read_text())
    by = {a["name"]: a for a in data["artifacts"]}
    assert by["tflite_dynamic"]["quantized"] is False and by["tflite_int8"]["quantized"] is True
    # smallest that fits and meets the budgets; on a microcontroller only .tflite qualifies, so the
    # 8,944 B tflite_int8 and not the 8,943 B onnx_dynamic_int8
    assert data["best"]["cortex_m4f"]["artifact"] == "tflite_int8"
    assert data["sources"]["bench"]["sha256"] == sha256_file(rep / "tiny" / "bench.json")
    assert data["sources"]["manifest"]["matches_bench"] is True
    ids = {f["id"] for f in data["figures"]}
    assert {"latency_host", "latency_device", "memory", "accuracy_size"} <= ids
    assert "drift_per_step" not in ids          # no per-step data: no figure
    for f in data["figures"]:
        png = (rep / "tiny" / f["file"]).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and sha256_hex(png) == f["sha256"]
    # absent extras are not shown
    for title in ("Streaming variants", "Streaming checks", "Emulated MCU results", "Quantization search"):
        assert f"### {title}" not in md
    s = json.loads((rep / "summary.json").read_text())
    assert s["models"]["tiny"]["best"]["cortex_m7"]["artifact"] == "tflite_int8"
    assert "| tiny |" in (rep / "summary.md").read_text()


def sha256_hex(b):
    import hashlib
    return hashlib.sha256(b).hexdigest()


def test_html_is_self_contained(tmp_path):
    cfg = make_fake(tmp_path, per_step=True)
    make_reports(load_config(cfg), progress=None)
    page = (tmp_path / "reports" / "tiny" / "report.html").read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page.replace('href="tiny/report.html"', ""))
    assert "<link" not in page.lower()
    imgs = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) >= 5                                 # with the drift-per-step figure
    for b64 in imgs:
        assert base64.b64decode(b64, validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    bench_sha = sha256_file(tmp_path / "reports" / "tiny" / "bench.json")
    assert page.count(bench_sha) >= len(imgs)            # every figure names its source file's sha256


def test_best_choice_respects_fit_and_budgets(tmp_path):
    # M4F: tflite_int8 (8.026 ms) over an 8.0 ms budget and the float files do not fit its RAM:
    # nothing qualifies. M7: tflite_int8 within 0.775 ms; the float files are too slow.
    budgets = ('[budgets.default]\nmust_fit = true\n[budgets.tiny.cortex_m4f]\nmax_latency_ms = 8.0\n'
               '[budgets.tiny.cortex_m7]\nmax_latency_ms = 0.775\n')
    cfg = make_fake(tmp_path, big_float=True, budgets=budgets)
    make_reports(load_config(cfg), progress=None)
    data = json.loads((tmp_path / "reports" / "tiny" / "report.json").read_text())
    assert data["best"]["cortex_m4f"]["artifact"] is None
    assert data["best"]["cortex_m7"]["artifact"] == "tflite_int8"
    by = {a["name"]: a for a in data["artifacts"]}
    assert by["tflite_float32"]["devices"]["cortex_m4f"]["verdict"] == "does not fit"
    assert by["tflite_int8"]["devices"]["cortex_m4f"]["budget_failures"] == ["max_latency_ms @ cortex_m4f"]
    assert by["tflite_float32"]["devices"]["cortex_m7"]["budget_failures"] == ["max_latency_ms @ cortex_m7"]
    md = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    assert "NO FIT (RAM)" in md_rows(md, "tflite_float32")[1][1]
    assert "★ BEST" in md_rows(md, "tflite_int8")[1][2] and "★ BEST" not in md_rows(md, "tflite_int8")[1][1]
    assert "| tiny | none qualifies | tflite_int8" in (tmp_path / "reports" / "summary.md").read_text()


def test_optional_sections_when_present(tmp_path):
    cfg = make_fake(tmp_path, streaming=True, emulated=True, per_step=True, quant_search=True)
    make_reports(load_config(cfg), progress=None)
    md = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    assert "### Streaming variants" in md and "stream_int8" in md
    assert "### Emulated MCU results" in md
    assert "### Quantization search" in md and "int8_default" in md
    data = json.loads((tmp_path / "reports" / "tiny" / "report.json").read_text())
    assert "drift_per_step" in {f["id"] for f in data["figures"]}
    assert all(b["artifact"] != "stream_int8" for b in data["best"].values())   # streaming is not ranked
    row = md_rows(md, "tflite_int8")[1]
    assert "emulated" in " ".join(row)


def test_no_bench_results_is_bad_input(tmp_path, capsys):
    cfg = make_fake(tmp_path, with_bench=False)
    assert run_edge(["--config", cfg, "report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no bench results" in err[0] and "tiny" in err[0]
    assert not (tmp_path / "reports" / "summary.md").exists()


def test_report_cli(tmp_path, capsys):
    cfg = make_fake(tmp_path)
    assert run_edge(["--config", cfg, "report", "--models", "tiny"]) == 0
    assert (tmp_path / "reports" / "tiny" / "report.html").is_file()
    assert run_edge(["--config", cfg, "report", "--models", "nope"]) == 2
