"""Wall time of `make demo` cold (as run on a fresh clone: virtualenv, training, every stage)
and warm (everything cached), written to reports/timings.json for the README. Standard library
only: the cold run starts before the virtualenv exists.

    python3 -m edge.timings            (or `make timings`, on a fresh clone)
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def _timed(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return round(time.perf_counter() - t0, 1)


def main() -> int:
    fresh = not Path(".venv").exists() and not Path("artifacts").exists()
    out = {"where": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                    f"{'fresh clone' if fresh else 'NOT a fresh clone'}"}
    out["make demo (cold)"] = _timed(["make", "demo"])
    out["make demo (warm)"] = _timed(["make", "demo"])
    Path("reports").mkdir(exist_ok=True)
    Path("reports/timings.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
