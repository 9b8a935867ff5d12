"""How the report writes values (bytes, microseconds, numbers, percentages), and the Table block."""
from __future__ import annotations


def fmt_bytes(n, short: bool = False):
    """Bytes in binary units: "1.50 MiB", "12.3 KiB", "512 B" (tables and text); short, for the
    labels inside a plot: "1.5M", "12K", "1.2K" (one letter, fewer digits, K below 1 MiB)."""
    if n is None:
        return "?" if short else "n/a"
    for size, letter in ((1 << 30, "G"), (1 << 20, "M")):
        if n >= size:
            return f"{n / size:.1f}{letter}" if short else f"{n / size:.2f} {letter}iB"
    if short:
        return f"{n / 1024:.0f}K" if n >= 10240 else f"{n / 1024:.1f}K"
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def fmt_us(us):
    if us is None:
        return "n/a"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_num(v, digits=4):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_change(v):
    """A signed change in percent: "+9.9 %"."""
    return "n/a" if v is None else f"{v:+.1f} %"


def fmt_share(v, digits=1):
    """A share in percent: "12.5 %"."""
    return "n/a" if v is None else f"{v:.{digits}f} %"


class Table:
    """A table block: headers, rows of strings, the `best` rows (highlighted) and a caption.
    The renderers (render_md, render_html) draw it."""

    def __init__(self, headers, rows=None, best=(), caption=""):
        self.headers, self.rows, self.best, self.caption = list(headers), list(rows or []), set(best), caption

    def add(self, row, best=False):
        if best:
            self.best.add(len(self.rows))
        self.rows.append([("" if c is None else str(c)) for c in row])
