"""TFLite Micro on the host, as the bit-exactness oracle and the arena-size yardstick.

Run these through edge.isolate.run_isolated: the TFLM runtime segfaults on too small an arena.
"""
from __future__ import annotations

import os
import re
import tempfile

import numpy as np


def run_tflm(tflite_path: str, inputs_path: str, outputs_path: str, arena_size: int = 0) -> dict:
    """Run every input of inputs_path (npz 'x', int8 [N, ...]) with the state reset before each;
    write the int8 outputs to outputs_path (npz 'y'); return the arena TFLM reports."""
    from tflite_micro import runtime
    from export.fileio import write_npz
    x = np.load(inputs_path)["x"]
    size = arena_size or max(64 * 1024, 10 * os.path.getsize(tflite_path))
    interp = runtime.Interpreter.from_file(tflite_path, arena_size=size)
    detail = interp.get_input_details(0)
    shape = tuple(detail["shape"])
    ys = []
    for k in range(x.shape[0]):
        interp.reset()
        interp.set_input(x[k].reshape(shape).astype(np.int8), 0)
        interp.invoke()
        ys.append(np.array(interp.get_output(0)).reshape(-1))
    write_npz(outputs_path, y=np.stack(ys).astype(np.int8))
    return {"arena_reported": _reported_arena(interp), "arena_given": size}


def _reported_arena(interp):
    """print_allocations() writes 'Arena allocation total N bytes' to the C-level stderr."""
    fd, path = tempfile.mkstemp(prefix="tflm-alloc-")
    os.close(fd)
    saved = os.dup(2)
    try:
        with open(path, "w") as f:
            os.dup2(f.fileno(), 2)
            try:
                interp.print_allocations()
            finally:
                os.dup2(saved, 2)
        text = open(path).read()
    except Exception:
        return None
    finally:
        os.close(saved)
        os.unlink(path)
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    return int(m.group(1)) if m else None


def probe(tflite_path: str, arena_size: int) -> bool:
    """One invoke with the given arena (crashes the process when the arena is too small)."""
    from tflite_micro import runtime
    interp = runtime.Interpreter.from_file(tflite_path, arena_size=int(arena_size))
    d = interp.get_input_details(0)
    interp.set_input(np.zeros(tuple(d["shape"]), np.int8), 0)
    interp.invoke()
    return True
