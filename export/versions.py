"""Versions of the tools that make and run artifacts; part of every cache key."""
import platform
from importlib import metadata

import edge

PACKAGES = ["tensorflow-cpu", "tf-keras", "keras", "numpy", "onnx", "onnxruntime", "tf2onnx",
            "ai-edge-litert", "tflite-micro"]


def tool_versions() -> dict:
    out = {"lstm-edge": edge.__version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    import os
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()}
