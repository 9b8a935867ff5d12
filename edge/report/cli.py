"""`edge report` on the command line: the subcommand and its arguments."""
from __future__ import annotations

from edge.options import add_models, names


def cmd_report(args):
    from edge.config import load_config
    from edge.report.build import make_reports
    cfg = load_config(args.config)
    make_reports(cfg, names(args.models), progress=lambda m: print(m, flush=True))
    return 0


def add_report_parser(subparsers):
    s = subparsers.add_parser("report", help="Markdown + HTML + JSON reports from manifests and bench results")
    add_models(s)
    s.set_defaults(func=cmd_report)
    return s
