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


def _clipping_lines(report) -> list:
    if not report["clipping"]["rows"]:
        return []
    out = ["", f"{'clipping':<12}{'of':<22}{'int8 range':>24}{'clipped':>10}{'below':>9}{'above':>9}"]
    for r in report["clipping"]["rows"]:
        rng = f"{r['range_units'][0]:.4g} .. {r['range_units'][1]:.4g}"
        out.append(f"{r['tensor']:<12}{r['what']:<22}{rng:>24}{100 * r['fraction_clipped']:>9.2f}%"
                   f"{100 * r['below']:>8.2f}%{100 * r['above']:>8.2f}%")
    return out


def _tensor_lines(report) -> list:
    out = ["", f"{'where':<22}{'err rmse':>10}{'err max':>10}{'outside':>9}{'drift alone':>13}"
               f"{'share':>7}{'float->':>9}"]
    for t in report["tensors"]:
        outside = t.get("float_outside_range", t.get("preact_saturated"))
        out.append(f"{t['point']:<22}{t['err_rmse']:>10.4g}{t['err_max']:>10.4g}"
                   f"{(f'{100 * outside:.2f}%' if outside is not None else '-'):>9}"
                   f"{t.get('drift_alone', float('nan')):>13.4g}{100 * t.get('share_alone', 0):>6.0f}%"
                   f"{100 * t.get('removed_if_kept_float', 0):>8.0f}%")
    em = report["emulation"]
    ag = report.get("agreement", {})
    out.append(f"(err: int8 value (TFLite Micro integer reference, first {ag.get('samples', '?')} "
               f"windows) vs float, in the tensor's units (outputs in report units); outside: "
               f"float values outside the int8 range (gates: pre-activation saturated); drift alone: "
               f"output drift with only this point quantized; share: its part of the emulated drift "
               f"{em['drift_rmse_all_points']:.4g} (runtime {em['runtime_drift_rmse']:.4g}); float->: drift "
               f"removed if only this point stayed float)")
    return out


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
