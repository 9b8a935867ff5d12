"""The frame the `python -m edge.X` maintenance tools (faults, fuzz, readme_figures, spread) share:
a parser named after the tool and described by its docstring, the common --artifacts and --out
options, bad input as one line and exit 2 (as `edge` itself answers it), and a campaign's verdict."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from groundfloor.errors import BadInput


def parser(tool: str, doc: str, *, artifacts: bool = False, out: str | None = None) -> argparse.ArgumentParser:
    """The parser of `python -m edge.<tool>`, described by the first paragraph of the tool's docstring;
    artifacts: add --artifacts (default artifacts/); out: add --out with that default."""
    p = argparse.ArgumentParser(prog=f"python -m edge.{tool}", description=doc.split("\n\n")[0])
    if artifacts:
        p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="exported artifacts folder")
    if out:
        p.add_argument("--out", type=Path, default=Path(out), help="where the JSON report goes")
    return p


def run(p: argparse.ArgumentParser, argv, body) -> int:
    """Parse argv with p and return body(**options)'s exit code (one keyword per option, as argparse
    names it: --max-windows -> max_windows); BadInput -> `edge.<tool>: error: ...` on stderr, exit 2."""
    options = vars(p.parse_args(argv))
    try:
        return body(**options)
    except BadInput as e:
        print(f"{p.prog.removeprefix('python -m ')}: error: {e}", file=sys.stderr)
        return 2


def verdict(out: Path, report: dict, ok: bool, summary: str) -> int:
    """A campaign's end: the report written to out (atomically), `-> out: PASS|FAIL<summary>` printed;
    exit code 0 if ok, else 1."""
    from groundfloor.fileio import write_json
    write_json(out, report)
    print(f"-> {out}: {'PASS' if ok else 'FAIL'}{summary}")
    return 0 if ok else 1
