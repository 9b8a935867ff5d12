"""Build the firmware with arm-none-eabi-gcc and run it in qemu-system-arm.

Boards: mps2-an386 (Cortex-M4) and mps2-an500 (Cortex-M7); flash at 0x0 and SRAM at
0x20000000 sized from the device profile, so a model that does not fit fails the link
(ModelTooLarge, with the sizes against the budget). Host-side builds (the TCG plugin, host.py's
libraries) use host_cc() and live under cache_root().
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from groundfloor.errors import BadInput, BudgetExceeded
from groundfloor.fileio import write_text

HERE = Path(__file__).resolve().parent
BOARDS = {
    "mps2-an386": {"cpu": "cortex-m4", "core": "Cortex-M4"},
    "mps2-an500": {"cpu": "cortex-m7", "core": "Cortex-M7"},
}
# the boards' memories the regions must fit in
BOARD_FLASH_MAX = 4 << 20
BOARD_SRAM_MAX = 4 << 20
MIN_STACK = 1024
SOURCES = ("mcu_startup.c", "mcu_main.c", "mcu_kernels.c")
VARIANTS = ("simd", "plain")


class ToolMissing(RuntimeError):
    pass


class ModelTooLarge(BudgetExceeded):
    """The firmware does not fit the device profile's flash or SRAM."""

    def __init__(self, message, sizes):
        super().__init__(message)
        self.sizes = sizes


def tool(name):
    path = shutil.which(name)
    if not path:
        raise ToolMissing(f"{name} not found (apt-get install gcc-arm-none-eabi "
                          "libnewlib-arm-none-eabi qemu-system-arm)")
    return path


def profile_budget(profile) -> dict:
    """flash_bytes / sram_bytes / clock_hz from a device-profile dict (or a TOML path)."""
    if isinstance(profile, (str, os.PathLike)):
        import tomllib
        try:
            with open(profile, "rb") as f:
                profile = tomllib.load(f)
        except (OSError, ValueError) as e:
            raise BadInput(profile, f"cannot read the device profile: {e}") from e
    if not isinstance(profile, dict):
        raise BadInput(None, "profile must be a dict with flash_bytes, sram_bytes, clock_hz")
    p = dict(profile.get("device", profile)) if "flash_bytes" not in profile else dict(profile)
    out = {}
    for key in ("flash_bytes", "sram_bytes"):
        v = p.get(key)
        if not isinstance(v, int) or v <= 0:
            raise BadInput(None, f"device profile needs a positive integer {key} (got {v!r})")
        out[key] = v
    clock = p.get("clock_hz")
    out["clock_hz"] = int(clock) if isinstance(clock, (int, float)) and clock > 0 else None
    out["name"] = p.get("name") or p.get("id") or "device"
    for key in ("cpi", "cycles_per_instruction"):
        if isinstance(p.get(key), (int, float)) and p[key] > 0:
            out["cpi"] = float(p[key])
            break
    return out


def cflags(board, variant):
    cpu = BOARDS[board]["cpu"]
    base = [f"-mcpu={cpu}", "-mthumb", "-mfloat-abi=soft", "-ffunction-sections",
            "-fdata-sections", "-ffreestanding", "-fno-tree-loop-distribute-patterns",
            "-fno-common", "-fno-ipa-icf", "-Wall", "-Wno-unused-function", "-g"]
    if variant == "simd":
        return base + ["-O3", "-fno-schedule-insns", "-DMCU_SIMD=1"]
    return base + ["-O2", "-DMCU_SIMD=0"]


def _size(elf):
    out = subprocess.run([tool("arm-none-eabi-size"), "-A", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    sec = {}
    for line in out.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+(\d+)", line)
        if m:
            sec[m.group(1)] = int(m.group(2))
    text = sec.get(".text", 0) + sec.get(".ARM.exidx", 0)
    data, bss, stack = sec.get(".data", 0), sec.get(".bss", 0), sec.get(".stack", 0)
    return {"text_rodata": text, "data": data, "bss": bss, "flash_bytes": text + data,
            "static_ram_bytes": data + bss, "stack_reserved": stack}


def _link_script(path, flash, sram):
    tpl = (HERE / "mcu_link.ld").read_text()
    write_text(path, tpl.replace("@FLASH_BYTES@", str(flash)).replace("@SRAM_BYTES@", str(sram))
               .replace("@MIN_STACK@", str(MIN_STACK)))


def compile_and_link(src_dir, build_dir, board, variant, flash, sram):
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    ld = build_dir / "link.ld"
    _link_script(ld, flash, sram)
    elf = build_dir / "fw.elf"
    srcs = [str(HERE / s) for s in SOURCES] + [str(Path(src_dir) / "model.c")]
    cmd = [tool("arm-none-eabi-gcc"), *cflags(board, variant),
           f"-I{src_dir}", f"-I{HERE}", *srcs, "-nostdlib", "-nostartfiles",
           f"-T{ld}", "-Wl,--gc-sections", f"-Wl,-Map={build_dir / 'fw.map'}", "-o", str(elf),
           "-lgcc"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r, elf


def build(src_dir, build_dir, profile=None, board="mps2-an386", variant="simd") -> dict:
    """Compile + link one variant of the generated sources; raise ModelTooLarge (sizes against
    the budget) when it does not fit the profile (None: the board's full memories)."""
    if board not in BOARDS:
        raise BadInput(None, f"unknown board {board!r}; use one of {', '.join(BOARDS)}")
    if variant not in VARIANTS:
        raise BadInput(None, f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    budget = profile_budget(profile) if profile is not None else {
        "flash_bytes": BOARD_FLASH_MAX, "sram_bytes": BOARD_SRAM_MAX, "clock_hz": None,
        "name": "board"}
    flash = min(budget["flash_bytes"], BOARD_FLASH_MAX)
    sram = min(budget["sram_bytes"], BOARD_SRAM_MAX)
    r, elf = compile_and_link(src_dir, build_dir, board, variant, flash, sram)
    if r.returncode != 0:
        if "overflowed" in r.stderr or "will not fit" in r.stderr:
            # measure what it needs with the board's full memories, then report against budget
            r2, elf2 = compile_and_link(src_dir, Path(build_dir) / "unbounded", board, variant,
                                        BOARD_FLASH_MAX, BOARD_SRAM_MAX)
            sizes = _size(elf2) if r2.returncode == 0 else {}
            need_ram = sizes.get("static_ram_bytes", 0) + MIN_STACK
            parts = []
            if sizes.get("flash_bytes", 0) > flash:
                parts.append(f"flash needs {sizes['flash_bytes']:,} B (text+rodata "
                             f"{sizes['text_rodata']:,} + data {sizes['data']:,}) but the "
                             f"budget is {flash:,} B")
            if need_ram > sram:
                parts.append(f"SRAM needs {need_ram:,} B (data+bss {sizes['static_ram_bytes']:,}"
                             f" + {MIN_STACK:,} stack reserve) but the budget is {sram:,} B")
            msg = (f"model does not fit {budget['name']} ({board}, {variant} build): "
                   + ("; ".join(parts) if parts else r.stderr.strip().splitlines()[-1]))
            raise ModelTooLarge(msg, {**sizes, "flash_budget": flash, "sram_budget": sram,
                                      "sram_needed": need_ram})
        raise RuntimeError(f"firmware build failed ({variant}, {board}):\n{r.stderr[-3000:]}")
    sizes = _size(elf)
    return {"elf": str(elf), "board": board, "variant": variant, "flash_budget": flash,
            "sram_budget": sram, **sizes}


def symbols(elf) -> list[tuple[str, int, int]]:
    """Function symbols (name, start, end) of the ELF, Thumb bit cleared, sorted."""
    out = subprocess.run([tool("arm-none-eabi-nm"), "-S", "--defined-only", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            addr, size, name = int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]
            if size:
                syms[(addr, addr + size)] = name
    return _innermost(sorted(((n, a, b) for (a, b), n in syms.items()), key=lambda s: s[1]))


def _innermost(syms: list) -> list:
    """Disjoint ranges: a function containing local symbols (the kernels' MAC loops) is split
    around them, each address going to the innermost symbol (the counting plugin wants sorted,
    disjoint ranges)."""
    edges = sorted({e for _, a, b in syms for e in (a, b)})
    out = []
    for lo, hi in zip(edges, edges[1:]):
        inside = [(b - a, n) for n, a, b in syms if a <= lo and hi <= b]
        if inside:
            name = min(inside)[1]
            if out and out[-1][0] == name and out[-1][2] == lo:
                out[-1] = (name, out[-1][1], hi)
            else:
                out.append((name, lo, hi))
    return out


def cache_root() -> Path:
    """Where built host-side helpers live (the TCG plugin, host.py's model libraries):
    $MCU_CACHE_DIR, else ~/.cache/lstm-edge-mcu."""
    return Path(os.environ.get("MCU_CACHE_DIR") or Path.home() / ".cache" / "lstm-edge-mcu")


def host_cc() -> str | None:
    """The host C compiler (gcc, else cc), or None."""
    return shutil.which("gcc") or shutil.which("cc")


def plugin_path() -> Path | None:
    """Build (once) the instruction-counting TCG plugin; None when it cannot be built."""
    src = HERE / "mcu_icount_plugin.c"
    cache = cache_root()
    so = cache / f"icount-{int(src.stat().st_mtime)}.so"
    if so.exists():
        return so
    cc = host_cc()
    if not cc:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    tmp = so.with_suffix(f".{os.getpid()}.tmp")
    r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    os.replace(tmp, so)
    return so


def run_qemu(elf, workdir, board="mps2-an386", plugin=None, plugin_args=(), timeout=120):
    cmd = [tool("qemu-system-arm"), "-M", board, "-nographic", "-monitor", "none",
           "-serial", "none", "-semihosting-config", "enable=on,target=native",
           "-icount", "shift=0", "-kernel", str(Path(elf).resolve())]
    if plugin:
        cmd += ["-plugin", ",".join([str(plugin), *plugin_args])]
    try:
        r = subprocess.run(cmd, cwd=str(workdir), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"qemu timed out after {timeout} s") from e
    return r
