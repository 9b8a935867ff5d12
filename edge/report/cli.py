"""`edge report` on the command line: the subcommand and its arguments."""
from __future__ import annotations


def cmd_report(args):
    from edge.config import load_config
    from edge.report.build import make_reports
    cfg = load_config(args.config)
    make_reports(cfg, args.models.split(",") if args.models else None, progress=lambda m: print(m, flush=True))
    return 0


def add_report_parser(subparsers):
    s = subparsers.add_parser("report", help="Markdown + HTML + JSON reports from manifests and bench results")
    s.add_argument("--models", help="comma-separated model names from the config (default: all)")
    s.set_defaults(func=cmd_report)
    return s
