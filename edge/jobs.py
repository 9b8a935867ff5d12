"""One stage for several models at once (`--jobs N`): each model runs as its own `edge` child
process, N at a time, with its output relayed line by line under the model's name.

Each child is the same command for one model (`--models NAME --jobs 1`), so a model exported
in parallel is byte-identical to one exported alone: nothing is shared but the machine. The
stages that time host runtimes (bench) keep one model at a time by default, so that no other
work shares the CPU while a latency is measured.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from groundfloor.versions import usable_cores

# which exit code of the children wins: bad input, interrupted, any other failure, a budget
# exceeded, ok
_RANK = {2: 4, 130: 3, 1: 1, 0: 0}


def jobs_for(requested: int | None, n_models: int) -> int:
    """--jobs as given, else one per available CPU; never more than there are models."""
    return max(1, min(requested or usable_cores(), n_models))


def add_jobs(parser, default_help: str = "one per CPU"):
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help=f"models processed at once, each in its own process (default: {default_help})")


def worst(codes) -> int:
    return max(codes, key=lambda code: _RANK.get(code, 2))


def _relay(stream, prefix: str, out, lock):
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            print(line if line.startswith(prefix.strip()) else prefix + line, file=out, flush=True)
    stream.close()


def _start(argv: list, name: str, lock) -> tuple:
    cmd = [sys.executable, "-m", "edge.cli", *argv, "--models", name, "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    prefix = f"[{name}] "
    readers = [threading.Thread(target=_relay, args=(s, prefix, o, lock), daemon=True)
               for s, o in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))]
    for r in readers:
        r.start()
    return proc, readers


def run_per_model(argv: list, names: list, jobs: int) -> int:
    """Run the command in argv once per model name, `jobs` at a time; the worst exit code."""
    lock, queue, running, codes = threading.Lock(), list(names), [], []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                running.append(_start(argv, queue.pop(0), lock))
            done = [r for r in running if r[0].poll() is not None]
            if not done:
                time.sleep(0.2)
            for proc, readers in done:
                codes.append(proc.wait())
                for r in readers:
                    r.join()
                running.remove((proc, readers))
    except KeyboardInterrupt:
        for proc, _ in running:
            proc.kill()
        raise
    return worst(codes)
