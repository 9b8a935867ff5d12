"""The `edge` command: lint, export, bench, report, check (and more) on models from the config.

Exit codes: 0 ok, 1 a budget was exceeded (or a search met no budget), 2 bad input.
"""
import argparse
import sys
import time
from pathlib import Path

from edge.jobs import add_jobs
from edge.options import add_artifacts_dir, add_models, names
from groundfloor.errors import BadInput
from groundfloor.locks import folder_lock


def _progress(msg):
    print(msg, flush=True)


def _models(args):
    from edge.budgets import budgets_from_config
    from edge.config import load_config
    cfg = load_config(args.config)
    # the whole config is checked before any stage runs: a broken budget table is one line now,
    # not after an export that took minutes
    budgets_from_config(cfg)
    return cfg, cfg.select(names(getattr(args, "models", None)))


def _in_parallel(args, entries, default_jobs=None):
    """The exit code when the models run as parallel `edge` children (edge.jobs), else None."""
    from edge.jobs import jobs_for, run_per_model
    jobs = jobs_for(args.jobs if args.jobs is not None else default_jobs, len(entries))
    if jobs <= 1:
        return None
    start = time.perf_counter()
    print(f"{len(entries)} models, {jobs} at a time (--jobs)", flush=True)
    code = run_per_model(args.argv, [m.name for m in entries], jobs)
    print(f"{args.command} of {len(entries)} models finished in {time.perf_counter() - start:.1f} s")
    return code


def cmd_lint(args):
    from export.lint import lint_file
    report = lint_file(args.model, trust_model_code=args.trust_model_code)
    print(report.format_table())
    if report.refused:
        row = report.refused[0]
        raise BadInput(args.model, f"layer '{row.layer}' ({row.cls}) cannot be converted: {row.reason}")
    return 0


def cmd_export(args):
    if not args.model:
        parallel = _in_parallel(args, _models(args)[1])
        if parallel is not None:
            return parallel
    from export.tfenv import WORKER_PRELOAD
    from groundfloor.isolate import shared_worker
    start = time.perf_counter()
    # One child process for the conversions (TensorFlow imported once, not once per artifact);
    # a crash still costs only the artifact that caused it.
    with shared_worker(WORKER_PRELOAD):
        manifests = _export_all(args)
    failed = [(mf["model"], n, a["error"]) for mf in manifests for n, a in mf["artifacts"].items()
              if a["status"] == "failed"]
    for model, name, err in failed:
        print(f"warning: {model}/{name} was not built: {err}", file=sys.stderr)
    print(f"export finished in {time.perf_counter() - start:.1f} s")
    return 0


def _only(args):
    """--only's artifact names, each one the export knows (None: all, the streaming twins too)."""
    if args.only is None:
        return None
    from export.pipeline import ARTIFACTS
    from groundfloor.errors import pick
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    for n in names or [""]:
        pick(ARTIFACTS, n, "artifact in --only")
    return names


def _export_all(args) -> list:
    from export.pipeline import export_model
    only = _only(args)
    if args.model:  # a user's own model, outside the config
        if not args.data:
            raise BadInput(args.model, "--data is required with --model")
        from edge.config import check_model_name
        name = check_model_name(args.name or Path(args.model).stem, args.model)
        out = Path(args.artifacts_dir or "artifacts") / name
        with folder_lock(out, "edge export"):
            manifests = [export_model(args.model, args.data, out, name=name, task=args.kind, progress=_progress,
                                      trust_model_code=args.trust_model_code, only=only)]
    else:
        from edge.reference import export_reference
        cfg, entries = _models(args)
        manifests = []
        for m in entries:
            out = Path(args.artifacts_dir or cfg.artifacts_dir) / m.name
            with folder_lock(out, "edge export"):
                if m.task:
                    manifests.append(export_reference(m.task, out, progress=_progress, only=only))
                else:
                    manifests.append(export_model(m.path, m.data, out, name=m.name, task=m.kind, only=only,
                                                  progress=_progress, trust_model_code=args.trust_model_code))
    return manifests


def cmd_bench(args):
    import tempfile
    from edge.tasks.long_stream import signal_loader
    from firmware_sim.bench import bench_model, summary_lines
    from firmware_sim.runners import RunConfig
    cfg, entries = _models(args)
    parallel = _in_parallel(args, entries, default_jobs=1)   # timed runs alone on the machine
    if parallel is not None:
        return parallel
    devices = names(args.devices) or cfg.devices
    for m in entries:
        art = Path(args.artifacts_dir or cfg.artifacts_dir) / m.name
        out = Path(cfg.reports_dir) / m.name / "bench.json"
        with folder_lock(art, "edge bench", create=False), tempfile.TemporaryDirectory(prefix="edge-signal-") as tmp:
            # the long stream replays the task's own series: the task loads it, when the bench needs it
            report = bench_model(art, devices, out, progress=_progress,
                                 config=RunConfig(warmup=args.warmup, runs=args.runs, timeout_s=args.timeout,
                                                  max_samples=args.max_samples),
                                 long_stream=False if args.no_long_stream else None,
                                 stream_signal=signal_loader(m.task, art, tmp), refresh=args.refresh)
        print("\n".join(summary_lines(report)))
        print(f"-> {out}")
    return 0


def cmd_devices(args):
    from firmware_sim.profiles import builtin_names, load_profile
    for name in builtin_names():
        p = load_profile(name)
        print(f"{name:12s} {p.core:16s} {p.clock_hz / 1e6:7.0f} MHz  SRAM {p.sram_bytes / 1024:9,.0f} KiB  "
              f"flash {p.flash_bytes / 1024:9,.0f} KiB")
    return 0


def _parse_budget(text):
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep:
        raise BadInput(None, f"--budget must look like key=value (e.g. max_rmse_increase=0.02), not '{text}'")
    try:
        return {key.strip(): float(value)}
    except ValueError:
        raise BadInput(None, f"--budget {key.strip()} must be a number, not '{value}'")


def cmd_quantize(args):
    from export.budgeted import quantize_model
    from export.quantize_search import format_table
    from export.quantize_search import SearchResult
    cfg, entries = _models(args)
    budget = _parse_budget(args.budget)
    parallel = _in_parallel(args, entries)
    if parallel is not None:
        return parallel
    all_met = True
    from export.tfenv import WORKER_PRELOAD
    from groundfloor.isolate import shared_worker
    for m in entries:
        art = Path(args.artifacts_dir or cfg.artifacts_dir) / m.name
        # one shared worker: TensorFlow imported once for the candidates that need no calibration,
        # and ahead of time for those that retire it (calibrated conversions)
        with folder_lock(art, "edge quantize", create=False), shared_worker(WORKER_PRELOAD):
            result = quantize_model(art, budget=budget, exhaustive=not args.first, progress=_progress)
        print(format_table(SearchResult(**{k: result[k] for k in SearchResult.__dataclass_fields__})))
        all_met &= bool(result["met"])
    return 0 if all_met else 1


def cmd_debug(args):
    import numpy as np
    from firmware_sim.mcu.debug import debug, format_report
    from groundfloor.fileio import write_json
    cfg = None
    art = Path(args.model)
    if not (art / "manifest.json").exists():
        from edge.config import load_config
        cfg = load_config(args.config)
        art = Path(args.artifacts_dir or cfg.artifacts_dir) / cfg.model(args.model).name
    if not (art / "manifest.json").exists():
        raise BadInput(art, "no manifest: run `edge export` for this model first")
    target = art / (args.artifact or "model_int8.tflite")
    if not target.exists():
        raise BadInput(target, "int8 artifact not found")
    d = np.load(art / "data.npz")
    n = args.max_samples
    report = debug(art / "source_tfkeras.h5", target, d["x_eval"][:n],
                   y_eval=d["y_eval"][:n] if "y_eval" in d.files else None, y_float=d["y_float"][:n])
    print(format_report(report))
    write_json(art / "debug.json", {k: v for k, v in report.items() if k != "text"})
    print(f"-> {art / 'debug.json'}")
    return 0


TRUST_HELP = ("load a model whose file carries Python code (a Lambda layer) and run that code; "
              "without it such files are refused")


def _command(sub, name, func, help):
    """The parser of one subcommand, which runs func(args)."""
    s = sub.add_parser(name, help=help)
    s.set_defaults(func=func)
    return s


def build_parser():
    p = argparse.ArgumentParser(prog="edge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="pipeline config (TOML); default: the embedded reference zoo")
    sub = p.add_subparsers(dest="command", required=True)

    s = _command(sub, "lint", cmd_lint, "pre-flight: how each layer will convert (fused, unrolled, refused)")
    s.add_argument("model", help=".keras, .h5, SavedModel directory, .onnx, .pt2 (torch.export) or .pt (TorchScript)")
    s.add_argument("--trust-model-code", action="store_true", help=TRUST_HELP)

    s = _command(sub, "export", cmd_export, "float32, dynamic and int8 TFLite + ONNX artifacts and a manifest")
    s.add_argument("--model", help="your own model (.keras, .h5, SavedModel dir, .onnx, .pt2, .pt) "
                                   "instead of the config's")
    s.add_argument("--data", help="calibration/evaluation data for --model (.npz or .csv)")
    s.add_argument("--name", help="artifact folder name for --model (default: the file's stem)")
    s.add_argument("--kind", default="regression", choices=["regression", "classification"])
    s.add_argument("--only", metavar="A,B",
                   help="build only these artifacts, e.g. tflite_float32,tflite_int8 (default: all of them "
                        "and the streaming twins)")
    s.add_argument("--trust-model-code", action="store_true", help=TRUST_HELP)
    add_models(s)
    add_jobs(s)
    add_artifacts_dir(s, "go")

    s = _command(sub, "bench", cmd_bench, "run every artifact in the simulated runtime of each device profile")
    add_models(s)
    s.add_argument("--devices", help="comma-separated profile names or .toml files (default: the config's)")
    add_artifacts_dir(s)
    s.add_argument("--runs", type=int, default=200, help="timed single-window runs per artifact and runner")
    s.add_argument("--refresh", action="store_true",
                   help="measure again even when nothing changed since the last bench (default: reuse it)")
    s.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds before a runner is declared hung")
    s.add_argument("--max-samples", type=int, default=None, help="evaluate on the first N windows only")
    s.add_argument("--no-long-stream", action="store_true",
                   help="skip the >=10,000-step streaming drift run (cached after the first run)")
    add_jobs(s, "1: host latencies are timed with nothing else running")

    _command(sub, "devices", cmd_devices, "list the built-in device profiles")

    s = _command(sub, "quantize", cmd_quantize,
                 "accuracy-budgeted int8: the cheapest artifact within an accuracy budget")
    add_models(s)
    s.add_argument("--budget", help="e.g. max_rmse_increase=0.02 (relative) or max_accuracy_drop=0.5 "
                                    "(points); default: 2%% RMSE / 0.5 points")
    s.add_argument("--first", action="store_true", help="stop at the first candidate within budget "
                                                        "(default: try all, for the side-by-side report)")
    add_jobs(s)
    add_artifacts_dir(s)

    s = _command(sub, "debug", cmd_debug, "per-layer drift debugger: where int8 error enters, what clips")
    s.add_argument("model", help="a model name from the config, or an artifacts/<model> folder")
    s.add_argument("--artifact", help="file in the folder to debug (default: model_int8.tflite)")
    s.add_argument("--max-samples", type=int, default=300, help="evaluation windows to use")
    add_artifacts_dir(s)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


from edge.check import add_check_parser  # noqa: E402  (light imports: matplotlib loads lazily)
from edge.firmware_cmd import add_firmware_parser  # noqa: E402
from edge.report import add_report_parser  # noqa: E402
from edge.sweep.cli import add_sweep_parser  # noqa: E402

_EXTRA_COMMANDS = [add_report_parser, add_check_parser, add_firmware_parser, add_sweep_parser]


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # what --jobs children rerun
    try:
        return args.func(args)
    except BadInput as e:
        print(f"edge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
