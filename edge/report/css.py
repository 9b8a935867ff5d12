"""The stylesheet inlined into report.html and summary.html."""

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1360px;
color:#1b1f23;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;border-bottom:2px solid #e1e4e8;padding-bottom:.3em}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #e1e4e8;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:13px;width:100%}
th,td{border:1px solid #d0d7de;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
tr.best td{background:#e6ffed;font-weight:600}
td.bestcell{background:#e6ffed;font-weight:600}
td.fail{background:#ffebe9}
caption{caption-side:bottom;text-align:left;font-size:12px;color:#57606a;padding-top:4px}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:4px;margin:.4em 0}
figure{margin:1em 0 2em}
figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:12px;color:#57606a}
details{margin:.4em 0}
summary{cursor:pointer;font-weight:600}
code{font-size:12px}
.meta{color:#57606a;font-size:13px}
"""

