"""Atomic file writes and hashing (nothing is ever left half-written), and reading JSON documents."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path, data: bytes):
    return _atomic(path, lambda f: f.write(data))


def write_text(path, text: str):
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_npz(path, **arrays):
    return _atomic(path, lambda f: np.savez(f, **arrays))


def move_into_place(tmp_path, path):
    """Rename a file a tool wrote next to its destination (same filesystem)."""
    os.replace(tmp_path, path)
    return Path(path)


def temp_path_for(path):
    """A temporary sibling path for tools that insist on writing files themselves."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    return Path(tmp)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():  # SavedModel: hash every file, in a stable order
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(sha256_file(p).encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_json_or_none(path):
    """A JSON file's content, or None when it is missing or unreadable (a cache or a previous
    result that is then made again)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def read_json_doc(path, what: str, table: str | None = None, hint: str = "", plural: bool = False):
    """A JSON document from the user's folders (a manifest, bench results), named `what` in the
    messages: BadInput (exit 2) when it is not valid JSON or, given `table`, not an object that
    holds that table."""
    is_, has = ("are", "have") if plural else ("is", "has")
    try:
        doc = read_json(path)
    except ValueError as e:
        raise BadInput(path, f"{what} {is_} not valid JSON: {e}") from None
    if table and not (isinstance(doc, dict) and isinstance(doc.get(table), dict)):
        raise BadInput(path, f"{what} {has} no '{table}' table{hint}")
    return doc


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
