"""The drift report as text: the verdict lines and the readable tables of format_report."""


def verdict(report) -> list:
    """The clipping found, and the largest single source of drift."""
    lines = []
    for r in report["clipping"]["clipping"]:
        lines.append(f"{r['tensor']} clips {100 * r['fraction_clipped']:.2f}% of {r['what']} "
                     f"(int8 range {r['range_units'][0]:.4g} .. {r['range_units'][1]:.4g}; "
                     f"{100 * r['below']:.2f}% below, {100 * r['above']:.2f}% above)")
    att = sorted(report.get("attribution", []), key=lambda a: -a["share_alone"])
    if att and att[0]["share_alone"] > 0:
        top = att[0]
        lines.append(f"largest single source of drift: {top['point']} (alone {top['drift_alone']:.4g}, "
                     f"{100 * top['share_alone']:.0f}% of the emulated drift; keeping it float removes "
                     f"{100 * top['removed_if_kept_float']:.0f}%)")
    return lines


def _runtime_lines(report) -> list:
    rt = report["runtime"]
    line = f"runtime drift vs float: RMSE {rt['drift_rmse']:.4g}, max {rt['drift_max']:.4g}, mean {rt['drift_mean']:+.4g}"
    if "rmse_int8" in rt:
        line += f"; task RMSE float {rt['rmse_float']:.4g} -> int8 {rt['rmse_int8']:.4g}"
    out = [line + " (LiteRT)"]
    if "tflm_drift_rmse" in rt:
        line = f"TFLite Micro drift vs float: RMSE {rt['tflm_drift_rmse']:.4g}, max {rt['tflm_drift_max']:.4g}"
        if "tflm_rmse_int8" in rt:
            line += f"; task RMSE int8 {rt['tflm_rmse_int8']:.4g}"
        out.append(line + f" ({100 * rt['litert_vs_tflm_output_equal']:.2f}% of output codes equal to LiteRT's)")
    return out


def _pct(v, digits) -> str:
    return f"{100 * v:.{digits}f}%"


# The two tables of format_report, one row per clipping row / per tensor point: (heading,
# alignment and width, the cell of a row).
CLIPPING_COLUMNS = (
    ("clipping", "<12", lambda r: r["tensor"]),
    ("of", "<22", lambda r: r["what"]),
    ("int8 range", ">24", lambda r: f"{r['range_units'][0]:.4g} .. {r['range_units'][1]:.4g}"),
    ("clipped", ">10", lambda r: _pct(r["fraction_clipped"], 2)),
    ("below", ">9", lambda r: _pct(r["below"], 2)),
    ("above", ">9", lambda r: _pct(r["above"], 2)),
)


def _outside(t) -> str:
    outside = t.get("float_outside_range", t.get("preact_saturated"))
    return "-" if outside is None else _pct(outside, 2)


TENSOR_COLUMNS = (
    ("where", "<22", lambda t: t["point"]),
    ("err rmse", ">10", lambda t: f"{t['err_rmse']:.4g}"),
    ("err max", ">10", lambda t: f"{t['err_max']:.4g}"),
    ("outside", ">9", _outside),
    ("drift alone", ">13", lambda t: f"{t.get('drift_alone', float('nan')):.4g}"),
    ("share", ">7", lambda t: _pct(t.get("share_alone", 0), 0)),
    ("float->", ">9", lambda t: _pct(t.get("removed_if_kept_float", 0), 0)),
)


def _table(columns, rows) -> list:
    """A blank line, the heading line, then one line per row."""
    return ["", "".join(f"{title:{fmt}}" for title, fmt, _ in columns),
            *("".join(f"{cell(r):{fmt}}" for _, fmt, cell in columns) for r in rows)]


def _clipping_lines(report) -> list:
    rows = report["clipping"]["rows"]
    return _table(CLIPPING_COLUMNS, rows) if rows else []


# What the tensor table's columns mean, under it.
TENSOR_LEGEND = (
    "(err: int8 value (TFLite Micro integer reference, first {samples} windows) vs float, in the "
    "tensor's units (outputs in report units); outside: float values outside the int8 range (gates: "
    "pre-activation saturated); drift alone: output drift with only this point quantized; share: its "
    "part of the emulated drift {all_points:.4g} (runtime {runtime:.4g}); float->: drift removed if "
    "only this point stayed float)")


def _tensor_lines(report) -> list:
    em = report["emulation"]
    legend = TENSOR_LEGEND.format(samples=report.get("agreement", {}).get("samples", "?"),
                                  all_points=em["drift_rmse_all_points"], runtime=em["runtime_drift_rmse"])
    return [*_table(TENSOR_COLUMNS, report["tensors"]), legend]


def _agreement_lines(report) -> list:
    out = []
    ag = report.get("agreement", {})
    for key, rname in (("tflm", "TFLite Micro"), ("litert", "LiteRT")):
        s = ag.get(key)
        if not s:
            continue
        parts = []
        for what in ("hidden", "output"):
            if what in s:
                part = f"{what} {100 * s[what]:.2f}% of {s[what + '_codes']} codes equal"
                if s[what] < 1:
                    part += f" (max {s[what + '_max_lsb_diff']} LSB)"
                parts.append(part)
        out.append(f"agreement of the integer reference with {rname}: " + ", ".join(parts))
    for c in report.get("reference_check", []):
        out.append(f"  vs {c.get('runtime', 'runtime')}, {c['layer']} {c['tensor']}: "
                   f"{100 * c['fraction_equal']:.2f}% equal, max {c['max_lsb_diff']} LSB")
    return out


def format_report(report) -> str:
    out = [f"int8 drift debugger: {report['int8']} ({report['samples']} samples)"]
    out += _runtime_lines(report)
    out += _clipping_lines(report)
    if report.get("tensors"):
        out += _tensor_lines(report) + _agreement_lines(report)
    out += [f"note: {n}" for n in report["notes"]]
    if report["verdict"]:
        out.append("")
        out += [f"* {v}" for v in report["verdict"]]
    return "\n".join(out)
