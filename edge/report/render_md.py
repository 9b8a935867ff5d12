"""The Markdown renderer (report.md, summary.md: fits a pull-request comment, figures as links):
one function per block kind, chosen from RENDERERS."""
from __future__ import annotations

import html


def table(t) -> str:
    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(esc(h) for h in t.headers) + " |",
           "|" + "|".join("---" for _ in t.headers) + "|"]
    for i, r in enumerate(t.rows):
        cells = [esc(c) for c in r]
        if i in t.best:
            cells[0] = f"**★ {cells[0]}**"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# The text blocks: one template each, then a blank line.
TEXT = {"h2": "### {}", "p": "{}", "warn": "> **Warning:** {}"}


def _text(kind):
    return lambda text, doc: [TEXT[kind].format(text), ""]


def _table(t, doc):
    return [table(t)] + (["", f"<sub>{t.caption}</sub>"] if t.caption else []) + [""]


def _details(payload, doc):
    summary, t = payload
    return (["<details>", f"<summary>{html.escape(summary)}</summary>", "", table(t), ""]
            + ([f"<sub>{html.escape(t.caption)}</sub>", ""] if t.caption else []) + ["</details>", ""])


def _fig(f, doc):
    return [f"- [{f['title']}](figures/{f['id']}.png): {f['caption']} (sha256 {f['sha256'][:16]}…)", ""]


RENDERERS = {**{kind: _text(kind) for kind in TEXT}, "table": _table, "details": _details, "fig": _fig}


def _body(blocks, doc) -> list[str]:
    return [line for kind, payload in blocks for line in RENDERERS[kind](payload, doc)]


def report(data, blocks) -> str:
    bench = data["sources"]["bench"]
    return "\n".join([f"## lstm-edge report: {data['model']}", ""] + _body(blocks, data)
                     + ["", f"<sub>Generated {data['created']} by `edge report` from {bench['path']} "
                            f"(sha256 {bench['sha256'][:16]}…). Full data: report.json; figures inline in "
                            f"report.html.</sub>", ""])


def summary(s, blocks) -> str:
    return "\n".join(["## lstm-edge summary", ""] + _body(blocks, s)
                     + [f"<sub>Generated {s['created']} by `edge report`; per-model reports in reports/<model>/.</sub>",
                        ""])
