"""The HTML renderer (report.html, summary.html: one self-contained file, inline CSS, figures as
base64 PNG, no scripts): one function per block kind, chosen from RENDERERS."""
from __future__ import annotations

import base64
import html

from edge.report.css import CSS


def _cell_class(c: str) -> str:
    if c.startswith("★ BEST"):
        return ' class="bestcell"'
    if c.startswith(("FAIL", "NO FIT")) or " over budget" in c:
        return ' class="fail"'
    return ""


def table(t) -> str:
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
    body = []
    for i, r in enumerate(t.rows):
        cells = [html.escape(c) for c in r]
        if i in t.best:
            cells[0] = "★ " + cells[0]
        cls = ' class="best"' if i in t.best else ""
        body.append(f"<tr{cls}>" + "".join(f"<td{_cell_class(c)}>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# The text blocks: one template each, filled with the escaped text.
TEXT = {"h2": "<h2>{}</h2>", "p": "<p>{}</p>", "warn": '<p class="warn"><strong>Warning:</strong> {}</p>'}


def _text(kind):
    return lambda text, doc: TEXT[kind].format(html.escape(text))


def _table(t, doc):
    return table(t)


def _details(payload, doc):
    summary, t = payload
    return f"<details open><summary>{html.escape(summary)}</summary>{table(t)}</details>"


def figure_tag(png: bytes, alt: str, caption_html: str, attrs: str = "") -> str:
    """A PNG embedded in the page (the report is one self-contained file) with its caption."""
    b64 = base64.b64encode(png).decode("ascii")
    return (f'<figure{attrs}><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{caption_html}</figcaption></figure>")


def _fig(f, doc):
    bench = doc["sources"]["bench"]
    return figure_tag(f["png"], f["title"],
                      f"<strong>{html.escape(f['title'])}</strong>. {html.escape(f['caption'])} Source: "
                      f"<code>{html.escape(bench['path'])}</code> sha256 <code>{bench['sha256']}</code>; "
                      f"PNG sha256 <code>{f['sha256']}</code>.", attrs=f' id="fig-{f["id"]}"')


RENDERERS = {**{kind: _text(kind) for kind in TEXT}, "table": _table, "details": _details, "fig": _fig}


def _body(blocks, doc) -> list[str]:
    return [RENDERERS[kind](payload, doc) for kind, payload in blocks]


def report(data, blocks) -> str:
    t = html.escape(f"lstm-edge report: {data['model']}")
    bench = data["sources"]["bench"]
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{t}</title>",
                      f"<style>{CSS}</style></head><body>", f"<h1>{t}</h1>",
                      f'<p class="meta">Generated {html.escape(data["created"])} from '
                      f'<code>{html.escape(bench["path"])}</code> '
                      f'(sha256 <code>{bench["sha256"]}</code>).</p>']
                     + _body(blocks, data) + ["</body></html>"])


def summary(s, blocks) -> str:
    links = ", ".join(f'<a href="{html.escape(i["report"])}">{html.escape(m)}</a>' for m, i in s["models"].items())
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>lstm-edge summary</title>',
                      f"<style>{CSS}</style></head><body><h1>lstm-edge summary</h1>",
                      f'<p class="meta">Generated {html.escape(s["created"])} from {html.escape(s["config"])}.</p>']
                     + _body(blocks, s) + ["<p>Reports: " + links + "</p></body></html>"])
