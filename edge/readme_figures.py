"""The README's measured tables, regenerated from a run's reports so they cannot go stale:

    python -m edge.readme_figures [--reports reports] [--readme README.md]   (or `make readme`)

Replaces the block between `<!-- measured:begin -->` and `<!-- measured:end -->` with tables
built from reports/<model>/bench.json and artifacts/<model>/ (manifest, search.json), each
saying which machine measured it. reports/timings.json (written by `make timings`) adds the
cold/warm timings and reports/spread.json (`make spread`) the spread across CPUs when present.
"""
from __future__ import annotations

import json
from pathlib import Path

from edge import toolmain

BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
MODELS = ("seattle_temp", "victoria_demand", "japanese_vowels")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(v, digits=4):
    return "n/a" if v is None else f"{v:.{digits}g}"


def _pct(change):
    return "n/a" if change is None else f"{100 * change:+.1f}%"


def _truth(art: dict, runner: str, key: str):
    return (((art.get("runners") or {}).get(runner) or {}).get("metrics") or {}).get("truth", {}).get(key)


def _cross(art: dict, runner: str, key: str):
    return (((art.get("runners") or {}).get(runner) or {}).get("metrics") or {}).get("cross", {}).get(key)


def accuracy_table(benches: dict, searches: dict) -> list[str]:
    rows = ["| model | float | tflite_int8 (LiteRT) | onnx_dynamic_int8 drift / tflite_int8 drift | "
            "`edge quantize` chose | its evaluation figure |", "|---|---|---|---|---|---|"]
    for m, b in benches.items():
        arts = b["artifacts"]
        cls = b["task"] == "classification"
        key = "acc" if cls else "rmse"
        fl = (b.get("float_reference") or {}).get("truth", {}).get(key)
        q = _truth(arts.get("tflite_int8", {}), "litert", key)
        qtxt = _fmt(q) if cls else f"{_fmt(q)} ({_pct((q - fl) / fl if q and fl else None)})"
        d_onnx, d_tfl = _cross(arts.get("onnx_dynamic_int8", {}), "onnxruntime", "rmse"), \
            _cross(arts.get("tflite_int8", {}), "litert", "rmse")
        ratio = f"{_fmt(d_onnx, 3)} / {_fmt(d_tfl, 3)}" + (f" ({d_onnx / d_tfl:.2f}x)" if d_onnx and d_tfl else "")
        s = searches.get(m) or {}
        chosen = (s.get("chosen") or {})
        figure = (chosen.get("evaluation") or {}).get("metric") or chosen.get("metric") or {}
        rows.append(f"| {m} | {_fmt(fl)} | {qtxt} | {ratio} | {chosen.get('name', 'n/a')} | "
                    f"{figure.get('name', '')} {_fmt(figure.get('value'))} |")
    return rows


def device_table(benches: dict) -> list[str]:
    rows = ["| model | device | emulated instructions / inference | instr per gate MAC | RAM vs TFLM arena | "
            "host build = TFLite Micro |", "|---|---|---|---|---|---|"]
    for m, b in benches.items():
        art = b["artifacts"].get("tflite_int8") or {}
        emu = (art.get("runners") or {}).get("emulated") or {}
        host = (emu.get("details") or {}).get("host_build") or {}
        for dev, d in (art.get("devices") or {}).items():
            e = d.get("emulated") or {}
            if e.get("status") != "ok":
                continue
            ins = e.get("instructions") or {}
            # three decimals: 1.997 must not print as 2 beside a target of 2.0
            per_mac = f"{ins['per_inference'] / ins['gate_macs']:.3f}" if ins.get("gate_macs") else "n/a"
            rows.append(f"| {m} | {dev} | {ins.get('per_inference', 0):,.0f} | {per_mac} | "
                        f"{_fmt(e.get('ram_vs_tflm_arena'), 3)} | {host.get('windows_equal_to_tflm')} of "
                        f"{host.get('windows')} windows |")
    return rows


def timing_lines(timings: dict | None) -> list[str]:
    if not timings:
        return ["Timings: not measured in this run (`make timings`)."]
    return [f"Timings ({timings.get('where', 'this machine')}): " + "; ".join(
        f"{k} {v:.0f} s" for k, v in timings.items() if isinstance(v, (int, float)))]


# The spread rows the README shows (reports/spread.md has every artifact and runner)
SPREAD_KEYS = ("tflite_float32/litert", "tflite_int8/litert", "tflite_int8/tflm", "tflite_16x8/tflm",
               "onnx_float32/onnxruntime", "onnx_dynamic_int8/onnxruntime", "onnx_qdq_int8/onnxruntime",
               "onnx_dynamic_int8_signed_weights")


def spread_lines(spread: dict | None) -> list[str]:
    """How far the host figures move across x86 CPUs, from reports/spread.json (`make spread`)."""
    if not spread:
        return ["Across CPUs: not measured in this run (`make spread`)."]
    from edge.spread import HOST_BOUND_REL, pct, spread_by_artifact, table_lines
    per_key = spread_by_artifact(spread.get("models") or {}, SPREAD_KEYS)
    said = "; ".join(f"{k.split('/')[0]} ({k.split('/')[1]}) " + (
        "bit-identical" if r["identical"] else
        f"task metric {pct(r['task_metric_rel'])}, drift RMSE {r['drift_rmse_abs']:.2g} apart")
        for k, r in per_key.items() if "/" in k)
    bound = [k.split("/")[0] for k, r in per_key.items() if "/" in k and r["task_metric_rel"] > HOST_BOUND_REL]
    if bound:
        said += (f". {', '.join(bound)}: its figures hold only for the CPU that measured them (the rows below "
                 "say which CPUs agree)")
    machine = spread.get("machine") or {}
    return [f"Across CPUs (`make spread`, {spread.get('created', '')[:10]}, on {machine.get('cpu')}, the others "
            "emulated): the same artifact files on every CPU. Largest spread over the three models: "
            f"{said or 'none measured'}. The signed-weight row is a control (onnxruntime's "
            "default quantization, which the toolkit does not ship): it saturates on AVX2 without VNNI, proof "
            "that the emulated CPUs reach other kernels.", "",
            *table_lines(spread, SPREAD_KEYS)]


def block(reports: Path, artifacts: Path) -> str:
    benches = {m: b for m in MODELS if (b := _load(reports / m / "bench.json"))}
    if not benches:
        raise SystemExit(f"{reports}: no bench.json (run `make demo` first)")
    searches = {m: _load(artifacts / m / "quantize" / "search.json") for m in benches}
    machine = next(iter(benches.values())).get("machine") or {}
    created = next(iter(benches.values())).get("created", "")
    lines = [f"Measured by `make demo` on {machine.get('cpu')} ({machine.get('cores_usable')} cores, "
             f"int8 dot product: {machine.get('int8_dot_product')}), {created[:10]}; regenerate with "
             "`make readme`. Every figure is over all evaluation windows unless it says otherwise.", "",
             *accuracy_table(benches, searches), "", *device_table(benches), "",
             *spread_lines(_load(reports / "spread.json")), "",
             *timing_lines(_load(reports / "timings.json"))]
    return "\n".join(lines)


def update(readme: Path, text: str) -> bool:
    s = readme.read_text()
    if BEGIN not in s or END not in s:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} block")
    head, rest = s.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + text + "\n" + END + tail
    from groundfloor.fileio import write_text
    write_text(readme, new)
    return new != s


def regenerate(artifacts: Path, reports: Path, readme: Path) -> int:
    """The measured block of readme rebuilt from reports/ and artifacts/."""
    changed = update(readme, block(reports, artifacts))
    print(f"{readme}: measured tables {'updated' if changed else 'unchanged'}")
    return 0


def main(argv=None) -> int:
    p = toolmain.parser("readme_figures", __doc__, artifacts=True)
    p.add_argument("--reports", type=Path, default=Path("reports"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return toolmain.run(p, argv, regenerate)


if __name__ == "__main__":
    raise SystemExit(main())
