"""Child-side builders for the export tests (isolate targets; the tests put this folder on
PYTHONPATH): builders that report success for a file nothing can run."""


def write_unrunnable(out_path, **kwargs):
    """Writes a .tflite no runtime can open (a header and zeros) and calls it converted."""
    with open(out_path, "wb") as f:
        f.write(b"\x1c\x00\x00\x00TFL3" + bytes(120))
    return {"seconds": 0.0, "options": {"mode": "unrunnable"}}
