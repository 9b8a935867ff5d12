"""The firmware library folder `edge firmware` hands over: sources, build files, README, sizes.

    r = write_library("model_int8.tflite", "reports/m/firmware", name="m", windows=(q, x))

1. render the C (library.py): a model the generator refuses raises BadInput naming the op,
   before any file is written;
2. write the folder into a temporary sibling: model.h/.c, mcu_kernels.h/.c, main.c (the example),
   Makefile, CMakeLists.txt, cmake/arm-none-eabi.cmake;
3. measure: the folder's own Makefile builds the library for each core of CORES (sizes from
   arm-none-eabi-size, the worst-case stack from GCC's call graph); with a device profile, a
   library that does not fit raises ModelTooLarge (sizes against the budget) and nothing is kept;
4. verify (libhost.verify) the host build against TFLite Micro on the given windows; a mismatch
   raises LibraryMismatch and nothing is kept;
5. README.md and model.json, then the folder replaces out_dir (two renames; an existing out_dir
   is replaced only when it is empty or an earlier library folder).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from groundfloor.errors import BadInput
from groundfloor.fileio import read_json, sha256_file, write_json, write_text
from groundfloor.versions import version_of

from .libfiles import CMAKELISTS, DSP_CPUS, MAKEFILE, TOOLCHAIN, readme
from .library import render_library
from .toolchain import HERE, ModelTooLarge, ToolMissing

GENERATOR = "lstm-edge edge firmware"
CORES = ("cortex-m4", "cortex-m7", "cortex-m3", "cortex-m0")
COPIED = {"mcu_kernels.c": "mcu_kernels.c", "mcu_kernels.h": "mcu_kernels.h",
          "mcu_dsp.h": "mcu_dsp.h", "mcu_lib_example.c": "main.c"}


class LibraryMismatch(RuntimeError):
    """The host build of the library does not give TFLite Micro's codes."""


def _check_out_dir(out_dir: Path):
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(out_dir, "exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        meta = out_dir / "model.json"
        try:
            ours = read_json(meta).get("generator") == GENERATOR
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise BadInput(out_dir, "exists and is not an `edge firmware` folder; not replacing it")


def _write_sources(d: Path, header: str, source: str):
    write_text(d / "model.h", header)
    write_text(d / "model.c", source)
    for src, dst in COPIED.items():
        shutil.copyfile(HERE / src, d / dst)
    write_text(d / "Makefile", MAKEFILE)
    write_text(d / "CMakeLists.txt", CMAKELISTS)
    write_text(d / "cmake" / "arm-none-eabi.cmake", TOOLCHAIN)


# ------------------------------------------------------------------ sizes

def _sections(obj: Path) -> dict:
    """code / constants / data / bss bytes of one object (arm-none-eabi-size -A)."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    s = {"code": 0, "const": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)", line)
        if not m:
            continue
        name, n = m.group(1), int(m.group(2))
        for prefix, key in ((".text", "code"), (".rodata", "const"), (".data", "data"),
                            (".bss", "bss")):
            if name == prefix or name.startswith(prefix + "."):
                s[key] += n
    return s


def _stack_bound(ci_files) -> int:
    """The deepest call chain from any model_* call, in bytes, from -fcallgraph-info=su files
    (no recursion or indirect calls in the library; libgcc helpers count 0)."""
    frame, calls = {}, {}
    for f in ci_files:
        for line in Path(f).read_text().splitlines():
            m = re.match(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes', line)
            if m:
                frame[m.group(1)] = int(m.group(2))
            m = re.match(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', line)
            if m:
                calls.setdefault(m.group(1), set()).add(m.group(2))

    def depth(fn, seen=()):
        if fn in seen:
            raise RuntimeError(f"recursion through {fn} in the library's call graph")
        return frame.get(fn, 0) + max((depth(c, seen + (fn,)) for c in calls.get(fn, ())), default=0)
    return max(depth(fn) for fn in frame if fn.startswith("model_"))


def measure(folder: Path, work: Path) -> dict:
    """Build the library with the folder's Makefile for each core; sizes and stack bound."""
    missing = [t for t in ("make", "arm-none-eabi-gcc", "arm-none-eabi-size") if not shutil.which(t)]
    if missing:
        return {"status": "not measured", "reason": f"{', '.join(missing)} not found"}
    cores = {}
    for cpu in CORES:
        build = work / cpu
        r = subprocess.run(["make", "-s", "-C", str(folder), f"CPU={cpu}", f"BUILD={build}",
                            "EXTRA_CFLAGS=-fcallgraph-info=su", "all"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"the library's Makefile failed for {cpu}:\n{r.stderr[-2000:]}")
        objs = [_sections(build / f"{n}.o") for n in ("model", "mcu_kernels")]
        tot = {k: sum(o[k] for o in objs) for k in objs[0]}
        cores[cpu] = {"kernels": "DSP (SMLAD)" if cpu in DSP_CPUS.split() else "plain C",
                      "code_bytes": tot["code"], "const_bytes": tot["const"],
                      "data_bytes": tot["data"], "bss_bytes": tot["bss"],
                      "flash_bytes": tot["code"] + tot["const"] + tot["data"],
                      "static_ram_bytes": tot["data"] + tot["bss"],
                      "stack_bytes": _stack_bound(sorted(build.glob("*.ci"))),
                      "warnings": [l for l in r.stderr.splitlines() if "warning" in l][:10]}
    return {"status": "ok", "compiler": _version("arm-none-eabi-gcc"), "cores": cores,
            "example": _linked_example(folder, work / "example")}


def _linked_example(folder: Path, build: Path) -> dict:
    """The example main.c linked with the library for Cortex-M4 (--gc-sections, libgcc, no libc
    or startup code): what the library costs in a firmware that calls model_step_f."""
    r = subprocess.run(["make", "-s", "-C", str(folder), "CPU=cortex-m4", f"BUILD={build}", "example"],
                       capture_output=True, text=True)
    elf = build / "example.elf"
    if r.returncode == 0:
        r = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft",
                            str(build / "main.o"), str(build / "libmodel.a"), "-nostdlib",
                            "-nostartfiles", "-Wl,--gc-sections", "-Wl,-e,main", "-lgcc", "-o",
                            str(elf)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"the example does not build and link:\n{r.stderr[-2000:]}")
    s = _sections(elf)
    return {"cpu": "cortex-m4", "flash_bytes": s["code"] + s["const"] + s["data"],
            "static_ram_bytes": s["data"] + s["bss"]}


def _version(tool) -> str:
    return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def core_of(profile) -> str:
    """The measured core a device profile stands for (its `core`, e.g. "cortex-m4f")."""
    core = str(getattr(profile, "core", "")).lower()
    return next((c for c in CORES if c in core), "cortex-m4")


def check_fits(sizes: dict, profile):
    """ModelTooLarge when the library does not fit the profile's flash or SRAM."""
    if sizes.get("status") != "ok":
        raise BadInput(None, f"cannot check the device budget: sizes {sizes['reason']}")
    cpu = core_of(profile)
    s = sizes["cores"][cpu]
    need_ram = s["static_ram_bytes"] + s["stack_bytes"]
    parts = []
    if s["flash_bytes"] > profile.flash_bytes:
        parts.append(f"flash needs {s['flash_bytes']:,} B but the budget is {profile.flash_bytes:,} B")
    if need_ram > profile.sram_bytes:
        parts.append(f"SRAM needs {need_ram:,} B (static {s['static_ram_bytes']:,} + stack "
                     f"{s['stack_bytes']:,}) but the budget is {profile.sram_bytes:,} B")
    if parts:
        raise ModelTooLarge(f"library does not fit {profile.name} ({cpu}): " + "; ".join(parts),
                            {**s, "flash_budget": profile.flash_bytes, "sram_budget": profile.sram_bytes})


# ------------------------------------------------------------------ the folder

def _verify(tflite_path, windows, info) -> dict | None:
    if windows is None:
        return None
    from .host import compiler
    from .libhost import verify
    q, x_float, what = windows
    try:
        v = verify(tflite_path, q, x_float)
    except ToolMissing as e:                  # no host compiler: the library ships unverified
        return {"status": "not run", "error": str(e), "windows": int(len(q)), "what": what}
    v.update(what=what, compiler=compiler()[1], tflm_version=version_of("tflite-micro"))
    if v["status"] == "mismatch":
        bad = [k for k, c in v["checks"].items() if c["windows_equal"] != c["windows"]]
        raise LibraryMismatch(f"the library differs from TFLite Micro / itself: {', '.join(bad)}")
    return v


def write_library(tflite_path, out_dir, *, name: str, windows=None, device=None,
                  progress=None) -> dict:
    """Write the library folder (see the module docstring). windows: (windows of codes
    [N, T, F], int8 or int16, their float values or None, a description) to verify on; device: a DeviceProfile the library
    must fit. Returns model.json's content plus "out_dir"."""
    say = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    lib = render_library(tflite_path)            # refusals happen here: nothing written yet
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_sources(tmp, lib.header, lib.source)
        say("building the library for " + ", ".join(CORES))
        with tempfile.TemporaryDirectory(prefix="edge-firmware-") as work:
            sizes = measure(tmp, Path(work))
        if device is not None:
            check_fits(sizes, device)
        if windows is not None:
            say(f"verifying the host build against TFLite Micro on {windows[2]}")
        verification = _verify(tflite_path, windows, lib.info)
        source = {"file": Path(tflite_path).name, "path": str(tflite_path),
                  "sha256": sha256_file(tflite_path), "bytes": Path(tflite_path).stat().st_size}
        meta = {"generator": GENERATOR, "model": name, "source": source, "library": lib.info,
                "sizes": sizes, "verification": verification,
                "device": getattr(device, "name", None)}
        write_text(tmp / "README.md", readme(name, lib.info, sizes, verification, source))
        write_json(tmp / "model.json", meta)
        _replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**meta, "out_dir": str(out_dir)}


def _replace(tmp: Path, out_dir: Path):
    """tmp becomes out_dir; the old folder (if any) is renamed away first, then removed."""
    old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
