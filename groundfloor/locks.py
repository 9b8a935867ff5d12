"""One run at a time per output folder: `with folder_lock(dir, "edge export"):` takes an
exclusive lock on dir/.edge.lock (fcntl, released by the kernel when the process dies, even
by kill -9), waits with a clear message while another run holds it, and clears temporary files
a killed run left behind (they are only ever renamed into place, never read)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

LOCK_NAME = ".edge.lock"
TEMP_SUFFIXES = (".tmp", ".tflite", ".onnx", ".npz", ".json", ".h5", ".keras", ".txt", ".c", ".h")


def stale_temps(folder: Path) -> list[Path]:
    """Hidden files fileio's atomic writes create (".<name>.<random>.<ext>") in folder."""
    out = []
    for p in folder.iterdir() if folder.is_dir() else []:
        if p.name.startswith(".") and p.name != LOCK_NAME and p.is_file() and p.name.count(".") >= 3 \
                and p.name.endswith(TEMP_SUFFIXES):
            out.append(p)
    return out


@contextlib.contextmanager
def folder_lock(folder, what: str, wait_message=None, create: bool = True):
    """Exclusive use of folder for one run; another run waits (printing once who holds it).
    create=False: a folder that does not exist is left alone (the run reports it missing)."""
    folder = Path(folder)
    if not create and not folder.is_dir():
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            (wait_message or (lambda m: print(m, file=sys.stderr)))(
                f"{folder}: {holder} is using this folder; waiting for it to finish ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})".encode(), 0)
        for p in stale_temps(folder):   # we hold the lock: no other run is writing them
            p.unlink(missing_ok=True)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
