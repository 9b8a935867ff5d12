"""`edge firmware MODEL`: an int8 or 16x8 model as a drop-in C library for a microcontroller.

MODEL is a model name (its artifacts in <artifacts_dir>/<name>/ with manifest.json), an
artifacts folder, or an int8 or 16x8 .tflite file; --artifact picks tflite_int8 (default),
tflite_16x8 (int16 activations: the library's calls take int16_t codes) or budgeted. The
library folder (firmware_sim.mcu.bundle) goes to --out, by default
<reports_dir>/<model>/firmware/, replaced as a whole. It is verified against TFLite Micro on the
model's evaluation windows (data.npz beside the manifest or the .tflite), else on random windows
of codes (int8 or int16). Exit 2 for a model the generator refuses or an artifact not built
(nothing written), 1 when it does not fit --device or does not verify.
"""
from __future__ import annotations

import sys
from pathlib import Path

from edge.options import add_artifacts_dir
from groundfloor.errors import BadInput, BudgetExceeded

ARTIFACTS = ("tflite_int8", "tflite_16x8", "budgeted")
RANDOM_WINDOWS = 64


def add_firmware_parser(subparsers):
    s = subparsers.add_parser("firmware", help="the int8 or 16x8 model as a self-contained C "
                                               "library for Cortex-M (API, Makefile, CMake, README)")
    s.add_argument("model", help="a model name from the artifacts folder, an artifacts/<model> "
                                 "folder, or an int8 or 16x8 .tflite file")
    s.add_argument("--artifact", default="tflite_int8", choices=ARTIFACTS,
                   help="which artifact of the manifest (default: tflite_int8)")
    s.add_argument("--out", help="output folder (default: <reports_dir>/<model>/firmware)")
    s.add_argument("--device", help="a device profile (name or .toml) the library must fit")
    s.add_argument("--max-samples", type=int, default=None,
                   help="verify on the first N evaluation windows (default: all)")
    add_artifacts_dir(s)
    s.set_defaults(func=cmd_firmware)
    return s


def _from_manifest(folder: Path, artifact: str) -> tuple[Path, str]:
    from groundfloor.fileio import read_json_doc
    mf = read_json_doc(folder / "manifest.json", "manifest")
    entry = (mf.get("artifacts") or {}).get(artifact)
    why = entry and entry.get("status") != "ok" and (entry.get("error") or entry.get("reason"))
    if why:
        raise BadInput(folder / "manifest.json", f"no built artifact '{artifact}': "
                       f"{entry.get('status')}: {' '.join(str(why).split())}")
    if not entry or entry.get("status") != "ok" or not entry.get("file"):
        raise BadInput(folder / "manifest.json", f"no built artifact '{artifact}' "
                       f"(artifacts: {', '.join(sorted(mf.get('artifacts') or {}))})")
    return folder / entry["file"], str(mf.get("model") or folder.name)


def resolve(args) -> tuple[Path, str, Path | None, Path]:
    """(the .tflite, the model's name, its data.npz or None, the default output folder)."""
    from edge.config import load_config
    cfg = load_config(args.config)
    target = Path(args.model)
    if target.suffix == ".tflite":
        if not target.is_file():
            raise BadInput(target, "model file not found")
        folder, name = target.parent, target.stem
        if (folder / "manifest.json").is_file():
            from groundfloor.fileio import read_json_doc
            name = str(read_json_doc(folder / "manifest.json", "manifest").get("model") or name)
        tflite = target
    else:
        folder = target if (target / "manifest.json").is_file() else \
            Path(args.artifacts_dir or cfg.artifacts_dir) / args.model
        if not (folder / "manifest.json").is_file():
            raise BadInput(folder, "no manifest.json: run `edge export` for this model first, or "
                           "give an int8 or 16x8 .tflite file")
        tflite, name = _from_manifest(folder, args.artifact)
    data = folder / "data.npz"
    return tflite, name, data if data.is_file() else None, Path(cfg.reports_dir) / name / "firmware"


def _windows(data: Path | None, info: dict, max_samples):
    """(windows of codes, their float values, a description) to verify on."""
    import numpy as np
    from firmware_sim.mcu.quant import quantize
    shape, code = (info["steps"], info["features"]), info["code_type"]
    if data is not None:
        with np.load(data) as d:
            x = d["x_eval"][:max_samples] if "x_eval" in d.files else None
        if x is not None and x.ndim == 3 and x.shape[1:] == shape and len(x):
            q = quantize(x, info["input_scale"], info["input_zero_point"], code)
            return q, x.astype(np.float32), f"evaluation windows ({data.name})"
    n = max_samples or RANDOM_WINDOWS
    lo, hi = np.iinfo(code).min, np.iinfo(code).max
    q = np.random.default_rng(0).integers(lo, hi + 1, size=(n, *shape)).astype(code)
    return q, None, f"random {code} windows"


def cmd_firmware(args):
    from firmware_sim.mcu.bundle import LibraryMismatch, write_library
    from firmware_sim.mcu.library import render_library
    tflite, name, data, default_out = resolve(args)
    info = render_library(tflite).info          # refuses (BadInput) before anything is written
    device = None
    if args.device:
        from firmware_sim.profiles import load_profile
        device = load_profile(args.device)
    out = Path(args.out) if args.out else default_out
    try:
        r = write_library(tflite, out, name=name, windows=_windows(data, info, args.max_samples),
                          device=device, progress=lambda m: print(m, flush=True))
    except (BudgetExceeded, LibraryMismatch) as e:
        print(f"edge: error: {e}", file=sys.stderr, flush=True)
        return 1
    for line in summary_lines(r):
        print(line)
    return 0


def summary_lines(r: dict) -> list[str]:
    lib, sizes, v = r["library"], r["sizes"], r["verification"]
    lines = [f"{r['model']}: {', '.join(lib['layers'])}; arena {lib['arena_bytes']:,} B"]
    if sizes.get("status") == "ok":
        for cpu, s in sizes["cores"].items():
            lines.append(f"  {cpu:10s} {s['kernels']:12s} flash {s['flash_bytes']:>8,} B  "
                         f"static RAM {s['static_ram_bytes']:>6,} B  stack <= {s['stack_bytes']:,} B")
    else:
        lines.append(f"  sizes not measured: {sizes.get('reason')}")
    if v:
        ok = sum(c["windows_equal"] == c["windows"] for c in v.get("checks", {}).values())
        lines.append(f"  verified on {v['windows']:,} {v['what']}: {v['status']} "
                     f"({ok} of {len(v.get('checks', {}))} checks equal)")
    lines.append(f"-> {r['out_dir']}")
    return lines
