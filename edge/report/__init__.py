"""`edge report`: Markdown, HTML and JSON reports from the manifests and bench results.

Per model (reports/<model>/):
  report.md    fits a pull-request comment (figures as links to figures/*.png)
  report.html  one self-contained file: inline CSS, figures inline as base64 PNG, no scripts
  report.json  the data both were made from
  figures/     the PNGs
Across models: reports/summary.md, summary.html, summary.json.

Every figure is labelled "measured" (on this host), "estimated" (cost model + device profile)
or "emulated" (an emulated device run), and names its source files with their sha256, the
tool versions and the machine. Optional sections (streaming variants, emulated MCU results,
quantization search candidates) appear only when the bench results or manifest hold them.

    from edge.report import make_reports
    paths = make_reports(load_config(), ["seattle_temp"])

Modules: collect (report.json data from bench.json, manifest.json, search.json), figures (which
figures, drawn by edge/plots.py), sections and extras (the report as blocks), render_md and
render_html (one renderer per format over the same blocks), css, summary (across models),
build (writing the files), cli (argparse). The best-choice policy is edge/policy.py, shared
with `edge check`; budget semantics are edge/budgets.py.
"""
from edge.report.build import make_reports, write_model_report
from edge.report.cli import add_report_parser

__all__ = ["add_report_parser", "make_reports", "write_model_report"]
