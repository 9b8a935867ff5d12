"""The one result cache: JSON records keyed by a hash of everything the result depends on
(file sha256s, options, code and tool versions), written atomically, so a rerun reuses a
result only when none of its inputs moved, and a corrupt or half-written entry is a miss."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from groundfloor.fileio import read_json_or_none, write_json


def default_cache_dir() -> Path:
    """$EDGE_CACHE_DIR, else ~/.cache/lstm-edge."""
    base = os.environ.get("EDGE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lstm-edge")
    return Path(base)


def key_of(*parts) -> str:
    """A 32-hex-digit key of JSON-able parts (dict order does not matter)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def code_hash(files, extra=()) -> str:
    """A 16-hex-digit hash of source files (name and bytes) plus extra strings (tool versions):
    a cached result is reused only for the same code and the same tools."""
    h = hashlib.sha256()
    for f in sorted(Path(p) for p in files):
        h.update(f.name.encode() + f.read_bytes())
    for e in extra:
        h.update(str(e).encode())
    return h.hexdigest()[:16]


class ResultCache:
    """JSON results under one folder, one file per (kind, key)."""

    def __init__(self, directory):
        self.directory = Path(directory) if directory else None

    def path(self, kind: str, key: str) -> Path | None:
        return self.directory / f"{kind}_{key}.json" if self.directory else None

    def get(self, kind: str, key: str, valid=None):
        """The stored value, or None when absent, unreadable or rejected by valid(value)."""
        path = self.path(kind, key)
        if path is None or not path.is_file():
            return None
        value = read_json_or_none(path)
        return value if value is not None and (valid is None or valid(value)) else None

    def put(self, kind: str, key: str, value):
        path = self.path(kind, key)
        if path is not None:
            write_json(path, value)
        return value

    def isolated(self, kind: str, key: str, target: str, kwargs: dict, timeout: float):
        """run_isolated(target, kwargs) unless cached: (value | None, {"cached", "seconds", ...})."""
        from groundfloor.isolate import run_isolated
        hit = self.get(kind, key)
        if hit is not None:
            return hit, {"cached": True, "seconds": 0.0}
        res = run_isolated(target, kwargs, timeout=timeout)
        if not res.ok:
            return None, {"cached": False, "status": res.status, "error": res.error,
                          "seconds": round(res.seconds, 3)}
        self.put(kind, key, res.value)
        return res.value, {"cached": False, "seconds": round(res.seconds, 3)}
