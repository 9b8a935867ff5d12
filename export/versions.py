"""Versions of the tools that make and run artifacts (part of every cache key), and the
machine a figure was measured on (part of every bench and report)."""
import os
import platform
from importlib import metadata

import edge

PACKAGES = ["tensorflow-cpu", "tf-keras", "keras", "numpy", "onnx", "onnxruntime", "tf2onnx",
            "ai-edge-litert", "tflite-micro"]


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def tool_versions() -> dict:
    out = {"lstm-edge": edge.__version__, "python": platform.python_version()}
    out.update({name: version_of(name) for name in PACKAGES})
    return out


def _first_line_value(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict:
    mem = _first_line_value("/proc/meminfo", "MemTotal")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"platform": platform.platform(), "machine": platform.machine(),
            "cpu": _first_line_value("/proc/cpuinfo", "model name") or platform.processor(),
            "cores_logical": os.cpu_count(), "cores_usable": usable,
            "ram_bytes": int(mem.split()[0]) * 1024 if mem else None,
            "python": platform.python_version()}
