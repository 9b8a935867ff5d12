"""Figures for `edge report` (matplotlib, Agg, no pyplot state). Each function returns PNG bytes,
or None when the data for that figure is absent (absent data is never drawn).

Every figure carries a provenance footer: the source files with their sha256, the tool versions
and the machine, so a PNG that travels alone still traces back to what it was drawn from.
"""
from __future__ import annotations

import io
import math
import textwrap

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from edge.report.fmt import fmt_bytes, fmt_us  # noqa: E402  (the report's own way of writing figures)

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
DPI = 100
STREAM_X = "stream position (samples, window start)"


def _new(width, height):
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _one_axes(width, height):
    """(figure, its single axes)."""
    fig = _new(width, height)
    return fig, fig.add_subplot(111)


def _finish(fig, footer: str) -> bytes:
    """Provenance footer, layout, PNG bytes."""
    wrapped = "\n".join(textwrap.wrap(footer, width=int(fig.get_figwidth() * 19), break_long_words=True))
    n = wrapped.count("\n") + 1
    fig.text(0.005, 0.005, wrapped, fontsize=6.5, family="monospace", color="#555555", va="bottom", ha="left")
    bottom = (n * 0.115 + 0.12) / fig.get_figheight()
    fig.tight_layout(rect=(0, min(bottom, 0.45), 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _finish_axes(fig, ax, footer: str, xlabel: str, ylabel: str, title: str, legend: bool = True,
                 **legend_kw) -> bytes:
    """The one-axes figures' common end: axis labels, title, legend, grid, then _finish."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7, **legend_kw)
    ax.grid(alpha=0.3)
    return _finish(fig, footer)


def _nan(values) -> list:
    """Values to plot, a gap (NaN) where one is missing."""
    return [math.nan if v is None else v for v in values]


# --------------------------------------------------------------------------- latency

def latency_distribution(series: list[dict], footer: str) -> bytes | None:
    """series: [{"label", "stats": latency_host dict, "samples": [..] | None}] (measured on the host).
    Raw samples: a box plot. Summary statistics only: what is there, drawn as such
    (bar p50-p90, whisker min-max, tick p99, diamond mean) and labelled so."""
    series = [s for s in series if s.get("stats") and s["stats"].get("p50") is not None]
    if not series:
        return None
    fig, ax = _one_axes(11, 1.2 + 0.42 * len(series) + 1.0)
    any_summary = False
    for i, s in enumerate(series):
        st, y = s["stats"], len(series) - 1 - i
        color = PALETTE[i % len(PALETTE)]
        if s.get("samples"):
            ax.boxplot([s["samples"]], positions=[y], orientation="horizontal", widths=0.5, showfliers=True,
                       flierprops={"markersize": 2}, medianprops={"color": "black"},
                       boxprops={"color": color})
            continue
        any_summary = True
        lo, hi = st.get("min"), st.get("max")
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=color, lw=1)
            ax.plot([lo, lo], [y - 0.15, y + 0.15], color=color, lw=1)
            ax.plot([hi, hi], [y - 0.15, y + 0.15], color=color, lw=1)
        if st.get("p90") is not None:
            ax.barh(y, st["p90"] - st["p50"], left=st["p50"], height=0.5, color=color, alpha=0.45,
                    edgecolor=color)
        ax.plot([st["p50"], st["p50"]], [y - 0.25, y + 0.25], color="black", lw=2)
        if st.get("p99") is not None:
            ax.plot([st["p99"]], [y], marker="|", markersize=14, color=color, mew=2)
        if st.get("mean") is not None:
            ax.plot([st["mean"]], [y], marker="D", markersize=5, color="black")
        ax.annotate(f"p50 {fmt_us(st['p50'])}", (st["p50"], y + 0.28), fontsize=7, ha="left", va="bottom")
    ax.set_yticks(range(len(series)))
    ax.set_yticklabels([s["label"] for s in reversed(series)], fontsize=8)
    ax.set_xscale("log")
    per = {s["stats"].get("per", "invoke") for s in series}
    ax.set_xlabel(f"host latency per {'/'.join(sorted(per))} (µs, log scale) — measured on this machine, "
                  f"not on a device")
    title = "Host latency distribution (measured)"
    if any_summary:
        title += ("\nno raw samples in bench.json: bar = p50–p90, black line = p50, whiskers = min–max, "
                  "tick = p99, ◆ = mean")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    return _finish(fig, footer)


def device_latency(artifacts: list[str], devices: list[str], values: dict, footer: str) -> bytes | None:
    """values[(artifact, device)] = {"estimated": us | None, "emulated": us | None}. A dot plot on a
    log axis (bars would mislead on a log scale)."""
    if not any(v.get("estimated") is not None or v.get("emulated") is not None for v in values.values()):
        return None
    fig, ax = _one_axes(11, 1.8 + 0.55 * len(artifacts))
    h = 0.7 / max(1, len(devices))
    emu_labelled = False
    for j, dev in enumerate(devices):
        ys, xs, eys, exs = [], [], [], []
        for i, a in enumerate(artifacts):
            v = values.get((a, dev)) or {}
            y = len(artifacts) - 1 - i + ((len(devices) - 1) / 2 - j) * h
            if v.get("estimated") is not None:
                ys.append(y)
                xs.append(v["estimated"] / 1000)
            if v.get("emulated") is not None:
                eys.append(y)
                exs.append(v["emulated"] / 1000)
        color = PALETTE[j % len(PALETTE)]
        ax.scatter(xs, ys, marker="o", s=28, color=color, label=f"{dev} (estimated)", zorder=3)
        for x, y in zip(xs, ys):
            ax.plot([x, x], [y, y], color=color)
        if exs:
            ax.scatter(exs, eys, marker="*", s=90, color=color, edgecolor="black", linewidth=0.6, zorder=4,
                       label=f"{dev} (emulated)")
            emu_labelled = True
    for i in range(len(artifacts) - 1):
        ax.axhline(i + 0.5, color="#dddddd", lw=0.8)
    ax.set_yticks(range(len(artifacts)))
    ax.set_yticklabels(list(reversed(artifacts)), fontsize=8)
    ax.set_ylim(-0.5, len(artifacts) - 0.5)
    ax.set_xscale("log")
    ax.set_xlabel("device latency per window (ms, log scale): ● cost-model estimate"
                  + (", ★ emulated run" if emu_labelled else ""))
    ax.set_title("Device latency (estimated from op counts and the device profile"
                 + ("; emulated where measured)" if emu_labelled else ")"), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="x", which="both", alpha=0.3)
    return _finish(fig, footer)


# --------------------------------------------------------------------------- drift

def drift_per_step(series: list[dict], footer: str) -> bytes | None:
    """series: [{"label", "values": [rmse per time step]}] (cross metrics: deployed vs float Keras)."""
    series = [s for s in series if s.get("values")]
    if not series:
        return None
    fig, ax = _one_axes(11, 4.2)
    for i, s in enumerate(series):
        vals = _nan(s["values"])
        ax.plot(range(len(vals)), vals, marker="o", markersize=2.5, lw=1.2, color=PALETTE[i % len(PALETTE)],
                label=s["label"])
    return _finish_axes(fig, ax, footer, "output time step", "rmse vs float Keras (output units)",
                        "Drift per time step (rmse, measured on the evaluation windows)")


def _long_stream_axes(runs, key):
    """(the long-stream results, by signal name, that hold per-window `key` values, a wide figure,
    its axes); None when no result holds them (no figure then)."""
    usable = {k: r for k, r in (runs or {}).items() if isinstance(r, dict) and (r.get("per_window") or {}).get(key)}
    return (usable, *_one_axes(11, 4.2)) if usable else None


def _window_starts(pw, key) -> list:
    return pw.get("start") or list(range(len(pw[key])))


def stream_drift(runs: dict, footer: str) -> bytes | None:
    """runs: {signal name: {"per_window": {"start": [...], "litert_rmse": [...], "tflm_rmse": [...]|None}}}."""
    if not (drawn := _long_stream_axes(runs, "litert_rmse")):
        return None
    usable, fig, ax = drawn
    for i, (name, r) in enumerate(usable.items()):
        pw = r["per_window"]
        x = _window_starts(pw, "litert_rmse")
        ax.plot(x, _nan(pw["litert_rmse"]), lw=1.2, color=PALETTE[i % len(PALETTE)], label=f"{name} (LiteRT)")
        if pw.get("tflm_rmse"):
            ax.plot(x, _nan(pw["tflm_rmse"]), lw=1, ls="--", color=PALETTE[i % len(PALETTE)],
                    label=f"{name} (TFLite Micro)")
    return _finish_axes(fig, ax, footer, STREAM_X, "rmse int8 stream vs float stream",
                        "Long-stream drift per window (no state reset)")


# --------------------------------------------------------------------------- memory

def memory_vs_budget(artifacts: list[str], devices: list[str], fits: dict, footer: str) -> bytes | None:
    """fits[(artifact, device)] = {"flash": {"need", "budget", "kind"} | None, "ram": {...} | None}.
    Need as a percentage of each device's budget; 100 % is the budget line."""
    if not any((v.get("flash") or v.get("ram")) for v in fits.values()):
        return None
    fig = _new(11, 1.8 + 0.3 * len(artifacts) * max(1, len(devices)) / 2)
    h = 0.8 / max(1, len(devices))
    for k, res in enumerate(("flash", "ram")):
        ax = fig.add_subplot(1, 2, k + 1)
        top = 100.0
        for j, dev in enumerate(devices):
            ys, xs, labels = [], [], []
            for i, a in enumerate(artifacts):
                line = (fits.get((a, dev)) or {}).get(res)
                if not line or not line.get("budget"):
                    continue
                pct = 100.0 * line["need"] / line["budget"]
                top = max(top, pct)
                ys.append(len(artifacts) - 1 - i + ((len(devices) - 1) / 2 - j) * h)
                xs.append(pct)
                labels.append(f"{fmt_bytes(line['need'], short=True)}/{fmt_bytes(line['budget'], short=True)}")
            bars = ax.barh(ys, xs, height=h * 0.9, color=PALETTE[j % len(PALETTE)], label=dev)
            for b, lab, x in zip(bars, labels, xs):
                ax.text(x + 1, b.get_y() + b.get_height() / 2, lab, fontsize=5.5, va="center")
        ax.axvline(100, color="black", lw=1.2, ls="--")
        ax.text(100, len(artifacts) - 0.4, " budget", fontsize=7)
        ax.set_xlim(0, top * 1.35)
        ax.set_yticks(range(len(artifacts)))
        ax.set_yticklabels(list(reversed(artifacts)) if k == 0 else [], fontsize=8)
        ax.set_xlabel(f"{'flash' if res == 'flash' else 'RAM'} need, % of the device budget")
        ax.set_title(f"{'Flash (model + runtime)' if res == 'flash' else 'RAM (arena/state + runtime)'}",
                     fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if k == 1:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Size and RAM per artifact against each device's budget (estimated: runtime reserves are "
                 "profile assumptions)", fontsize=9)
    return _finish(fig, footer)


# --------------------------------------------------------------------------- accuracy

def accuracy_vs_size(points: list[dict], metric: str, float_value, footer: str,
                     higher_is_better: bool) -> bytes | None:
    """points: [{"label", "bytes", "value", "quantized"}]; the task metric against ground truth."""
    points = [p for p in points if p.get("bytes") and p.get("value") is not None]
    if not points:
        return None
    fig, ax = _one_axes(8, 5)
    xs = [p["bytes"] / 1024 for p in points]
    vs = [p["value"] for p in points]
    xr = (max(xs) - min(xs)) or 1.0
    vr = (max(vs) - min(vs)) or abs(vs[0]) or 1.0
    placed = []
    for i, p in enumerate(points):
        x, v = p["bytes"] / 1024, p["value"]
        ax.scatter([x], [v], s=50, marker="o" if p.get("quantized") else "s",
                   color=PALETTE[i % len(PALETTE)], zorder=3)
        near = sum(1 for (px, pv) in placed if abs(px - x) < 0.08 * xr and abs(pv - v) < 0.06 * vr)
        placed.append((x, v))
        ax.annotate(p["label"], (x, v), fontsize=7, xytext=(6, 4 + 10 * near), textcoords="offset points",
                    color=PALETTE[i % len(PALETTE)])
    if float_value is not None:
        ax.axhline(float_value, color="black", ls="--", lw=1)
        ax.annotate("float Keras", (1.0, float_value), xycoords=("axes fraction", "data"), fontsize=7,
                    ha="right", va="top", xytext=(-3, -3), textcoords="offset points")
    ax.margins(x=0.15, y=0.15)
    return _finish_axes(fig, ax, footer, "artifact file size (KiB)  —  ● quantized, ■ float",
                        f"{metric} vs ground truth ({'higher' if higher_is_better else 'lower'} is better)",
                        "Task metric against size (measured on the host)", legend=False)


def cell_state_range(runs: dict, footer: str) -> bytes | None:
    """runs: {signal name: long_stream_drift result}. Per window: the float model's max |c|
    (numpy, no cell clip) and the int8 model's max |c| against the int16 cell-state range (the
    saturation limit, dashed); the fraction of int8 cell values at that limit on a second axis."""
    if not (drawn := _long_stream_axes(runs, "float_max_abs_c")):
        return None
    usable, fig, ax = drawn
    ranges = []
    at_limit_any = False
    for i, (name, r) in enumerate(usable.items()):
        pw = r["per_window"]
        x = _window_starts(pw, "float_max_abs_c")
        color = PALETTE[i % len(PALETTE)]
        ax.plot(x, pw["float_max_abs_c"], lw=1.4, color=color, label=f"{name}: float max |c| (no clip)")
        if pw.get("int8_max_abs_c"):
            ax.plot(x, pw["int8_max_abs_c"], lw=1, ls=":", color=color, label=f"{name}: int8 max |c| (dequantized)")
        for rg in r.get("int16_cell_range") or []:
            if rg:
                ranges.append(rg)
        if any((v or 0) > 0 for v in pw.get("int8_cell_at_limit_fraction") or []):
            at_limit_any = True
            ax2 = ax.twinx()
            ax2.plot(x, pw["int8_cell_at_limit_fraction"], color="#d62728", lw=0.8, alpha=0.6)
            ax2.set_ylabel("fraction of int8 cell values at the int16 limit", fontsize=7, color="#d62728")
    for k, rg in enumerate(sorted(set(round(v, 6) for v in ranges))):
        ax.axhline(rg, color="black", ls="--", lw=1)
        ax.annotate(f"int16 cell range ±{rg:.3g}", (1.0, rg), xycoords=("axes fraction", "data"), fontsize=7,
                    ha="right", va="bottom", xytext=(-3, 2), textcoords="offset points")
    top = max([max(r["per_window"]["float_max_abs_c"]) for r in usable.values()] + ranges)
    ax.set_ylim(0, top * 1.15)
    return _finish_axes(fig, ax, footer, STREAM_X, "max |cell state| in the window",
                        "Cell state against the int8 model's int16 cell range (long stream, no reset)"
                        + ("; red: share of int8 cell values at the limit" if at_limit_any else ""), loc="lower left")


def emulated_instructions(rows: list[dict], footer: str) -> bytes | None:
    """rows: [{"label", "split": {"matrix", "activations", "lstm_rest", "other_layers"}, "plain": n | None}]
    (emulated instruction counts per inference). Stacked bars of the SIMD build's split; a diamond
    at the plain-C build's total."""
    rows = [r for r in rows if r.get("split")]
    if not rows:
        return None
    parts = [("matrix", "gate matrix products"), ("activations", "sigmoid/tanh"),
             ("lstm_rest", "cell update, requantization"), ("other_layers", "other layers")]
    fig, ax = _one_axes(11, 1.6 + 0.45 * len(rows))
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        left = 0.0
        for k, (key, label) in enumerate(parts):
            v = (r["split"].get(key) or 0) / 1e3
            ax.barh(y, v, left=left, height=0.55, color=PALETTE[k], label=label if i == 0 else None)
            left += v
        ax.annotate(f"{left:,.0f}k", (left, y), fontsize=7, xytext=(3, 0), textcoords="offset points", va="center")
        if r.get("plain"):
            ax.plot([r["plain"] / 1e3], [y], marker="D", color="black", markersize=5,
                    label="plain C build (total)" if i == 0 else None)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["label"] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel("instructions per inference (thousands), exact count in QEMU — SIMD (DSP extension) build")
    ax.set_title("Emulated Cortex-M instructions per inference, by kernel (emulated)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="x", alpha=0.3)
    return _finish(fig, footer)
