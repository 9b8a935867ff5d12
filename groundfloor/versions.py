"""Versions of the tools that make and run artifacts (part of every cache key), and the
machine a figure was measured on (part of every bench and report)."""
import os
import platform
from importlib import metadata

import groundfloor

PACKAGES = ["tensorflow-cpu", "tf-keras", "keras", "numpy", "onnx", "onnxruntime", "tf2onnx",
            "ai-edge-litert", "tflite-micro"]


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def tool_versions() -> dict:
    out = {"lstm-edge": groundfloor.__version__, "python": platform.python_version()}
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


# The instruction-set features that decide which int8 / float kernels LiteRT (XNNPACK) and
# onnxruntime (MLAS) pick on this host: host figures depend on them, the device's do not.
ISA_FEATURES = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimd", "asimddp", "i8mm",
                "sve", "sve2")


def cpu_features() -> list:
    """The ISA_FEATURES this host's CPU reports (Linux /proc/cpuinfo flags or Features)."""
    flags = _first_line_value("/proc/cpuinfo", "flags") or _first_line_value("/proc/cpuinfo", "Features")
    present = set((flags or "").split())
    return [f for f in ISA_FEATURES if f in present]


# numpy's runtime dispatch reads cpuid, as MLAS and XNNPACK do; /proc/cpuinfo is the kernel's view
# of the real CPU, which QEMU user-mode emulation of another CPU model passes through unchanged.
_NUMPY_CPUID_NAMES = {"SSE41": "sse4_1", "SSE42": "sse4_2", "AVX": "avx", "AVX2": "avx2", "FMA3": "fma",
                      "F16C": "f16c", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512VL": "avx512vl",
                      "AVX512VNNI": "avx512_vnni", "AVX512BF16": "avx512_bf16", "ASIMD": "asimd",
                      "ASIMDDP": "asimddp", "SVE": "sve"}


def cpuid_features() -> list:
    """The ISA_FEATURES the CPU's cpuid reports to this process (what the kernels dispatch on),
    as numpy's runtime detection sees them; true under emulation, unlike cpu_features()."""
    from numpy._core._multiarray_umath import __cpu_features__
    present = {name for key, name in _NUMPY_CPUID_NAMES.items() if __cpu_features__.get(key)}
    return [f for f in ISA_FEATURES if f in present]


def int8_dot_product(features) -> str:
    """Which int8 dot-product path kernels have on a CPU with these ISA_FEATURES."""
    return _int8_dot_product(features)


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity), else every logical CPU."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    return _first_line_value("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def machine() -> dict:
    mem = _first_line_value("/proc/meminfo", "MemTotal")
    return {"platform": platform.platform(), "machine": platform.machine(),
            "cpu": cpu_name(), "cores_logical": os.cpu_count(), "cores_usable": usable_cores(),
            "ram_bytes": int(mem.split()[0]) * 1024 if mem else None,
            "python": platform.python_version(), "cpu_features": cpu_features(),
            "int8_dot_product": _int8_dot_product(cpu_features())}


def _int8_dot_product(features) -> str:
    """Which int8 dot-product path the host's kernels have: its figures hold only for it."""
    if {"avx512_vnni", "avx_vnni"} & set(features):
        return "x86 VNNI"
    if "asimddp" in features:
        return "ARM dot product"
    if "avx2" in features:
        return "x86 AVX2 without VNNI (u8s8 pair sums saturate in int16)"
    return "other"
