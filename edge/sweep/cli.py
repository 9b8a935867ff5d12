"""`edge sweep SPACE.toml`: the subcommand. Exit 0 when every device has a variant within budget,
1 when a device has only a nearest miss (printed with what it misses) or every variant failed,
2 on bad input (the space file, the data, an unreachable Ray address)."""
from __future__ import annotations

from edge.sweep.pareto import describe_basis, describe_misses


def _summary_lines(record) -> list[str]:
    lines = []
    for dev in record["devices"]:
        rec = record["results"][dev]["recommendation"]
        if rec["index"] is None:
            lines.append(f"{dev}: {rec['why']}")
            continue
        p = record["points"][rec["index"]]
        known = None not in (p["metric"], p["latency_ms"], p["ram_bytes"], p["flash_bytes"])
        fig = (f"{p['metric_name']} {p['metric']:.4g}, {p['latency_ms']:.4g} ms {p.get('latency_kind')}, "
               f"RAM {p['ram_bytes']:,} B, flash {p['flash_bytes']:,} B" if known else "figures incomplete")
        if rec["status"] == "met":
            basis = record["results"][dev].get("latency_basis")
            lines.append(f"{dev}: recommended {p['variant_id']} / {p['artifact']} ({fig}); "
                         f"front of {len(record['results'][dev]['front'])} point(s)"
                         + (f"; {describe_basis(basis)}" if basis else ""))
        else:
            lines.append(f"{dev}: no variant meets every budget; nearest miss {p['variant_id']} / {p['artifact']} "
                         f"misses {describe_misses(rec['misses'])}")
    return lines


def _ms(v):
    return "n/a" if v is None else f"{v:.4g}"


def front_table(record, dev) -> str:
    """The device's Pareto front as aligned text: each latency with its kind (device figure: what the
    budgets judge; compared: what the front ranks)."""
    res = record["results"][dev]
    head = ["variant / artifact", "metric", "latency ms (kind)", "compared ms (kind)", "RAM B", "flash B"]
    rows = [head]
    for i in res["front"]:
        p = record["points"][i]
        star = "*" if i == res["recommendation"].get("index") else " "
        rows.append([f"{star} {p['variant_id']} / {p['artifact']}", f"{p['metric_name']} {_ms(p['metric'])}",
                     f"{_ms(p['latency_ms'])} ({p.get('latency_kind') or '-'})",
                     f"{_ms(p.get('latency_compared_ms'))} ({p.get('latency_compared_kind') or '-'})",
                     f"{p['ram_bytes']:,}" if p["ram_bytes"] is not None else "n/a",
                     f"{p['flash_bytes']:,}" if p["flash_bytes"] is not None else "n/a"])
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_sweep(args):
    from edge.sweep.run import FAKE_STEP, REAL_STEP, run_sweep
    from edge.sweep.space import load_space
    space = load_space(args.space, data=args.data, kind=args.kind, task=args.task)
    simulated = args.simulate is not None
    record = run_sweep(space, artifacts_dir=args.artifacts_dir, reports_dir=args.reports_dir, ray_address=args.ray,
                       workers=args.workers, target=FAKE_STEP if simulated else REAL_STEP,
                       fake={"sleep_s": args.simulate} if simulated else None, retries=args.retries,
                       timeout_s=args.variant_timeout, print_fn=lambda m: print(m, flush=True),
                       every=args.progress_every)
    for dev in record["devices"]:
        if record["results"][dev]["front"]:
            print(f"Pareto front on {dev} (* recommended or nearest miss):\n{front_table(record, dev)}")
    for line in _summary_lines(record):
        print(line)
    for p in record.get("report", []):
        if p.endswith(("report.html", "check.toml")):
            print(f"-> {p}")
    if not any(v["status"] == "ok" for v in record["variants"]):
        print("edge: every variant failed (see sweep.json)", flush=True)
        return 1
    return 0 if all(record["results"][d]["recommendation"]["status"] == "met" for d in record["devices"]) else 1


def add_sweep_parser(subparsers):
    s = subparsers.add_parser("sweep", help="train a grid of variants on Ray; Pareto front and the smallest "
                                            "variant within budget per device")
    s.add_argument("space", help="search space (TOML), e.g. edge/tasks/sweep_example.toml")
    s.add_argument("--data", help="your data (.npz / .csv, as `edge export --data`) instead of the space's [data]")
    s.add_argument("--kind", choices=["regression", "classification"], help="task kind of --data")
    s.add_argument("--task", help="a reference task instead of the space's [data]")
    s.add_argument("--ray", metavar="ADDRESS", help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto); "
                                                    "default: a local Ray instance started for the sweep")
    s.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: all)")
    s.add_argument("--retries", type=int, default=1, help="retries of a variant that fails or crashes (default 1)")
    s.add_argument("--variant-timeout", type=float, default=None, help="seconds before a running variant is "
                                                                        "cancelled (and retried); default: none")
    s.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines when "
                                                                      "nothing finishes")
    s.add_argument("--artifacts-dir", default="artifacts", help="where artifacts/sweeps/ go (default: artifacts)")
    s.add_argument("--reports-dir", default="reports", help="where reports/sweeps/ go (default: reports)")
    s.add_argument("--simulate", nargs="?", type=float, const=0.0, metavar="SECONDS",
                   help="simulated variants (no training, SECONDS of sleep each): the orchestration alone, "
                        "for trying a space or a cluster")
    s.set_defaults(func=cmd_sweep)
    return s
