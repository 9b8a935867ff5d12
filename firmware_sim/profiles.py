"""Device profiles: TOML data files describing a target's clock, memory budgets and cost model.

    from firmware_sim.profiles import load_profile, builtin_names
    p = load_profile("cortex_m4f")          # a built-in, by name
    p = load_profile("boards/my_board.toml")  # a user file, by path

Built-ins live in firmware_sim/profiles/*.toml; every field is documented there with its unit
and source. A wrong name or a bad file raises groundfloor.errors.BadInput (CLI exit code 2).
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from groundfloor.errors import BadInput

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
DEVICE_CLASSES = ("mcu", "linux")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    core: str
    device_class: str              # "mcu" | "linux"
    clock_hz: int                  # Hz
    sram_bytes: int                # RAM budget, bytes
    flash_bytes: int               # flash / storage budget, bytes
    cycles_per_mac_int8: float
    cycles_per_mac_float32: float
    op_overhead_cycles: float
    cycles_per_activation: float
    cycles_per_instruction: float
    description: str = ""
    runtime_flash_bytes: int = 0   # flash reserved for runtime + application code
    runtime_sram_bytes: int = 0    # RAM reserved for stack, heap, OS, application
    cycles_per_mac_int16: float = 0.0
    cycles_per_elementwise: float = 0.0
    runtimes: tuple = ()           # bench runners that stand for what the device runs
    source_file: str = ""

    def __post_init__(self):
        if not self.runtimes:
            self.runtimes = DEFAULT_RUNTIMES[self.device_class]

    def cycles_per_mac(self, dtype: str) -> float:
        if dtype == "int8":
            return self.cycles_per_mac_int8
        if dtype == "int16":
            return self.cycles_per_mac_int16 or self.cycles_per_mac_int8
        return self.cycles_per_mac_float32

    def as_dict(self) -> dict:
        return asdict(self)


# What a device runs when its profile does not say: bare-metal TFLite Micro (or the generated
# firmware the emulator runs) on a microcontroller, LiteRT or onnxruntime on a Linux board.
DEFAULT_RUNTIMES = {"mcu": ("tflm", "emulated"), "linux": ("litert", "onnxruntime")}
_TEXT = {"name", "core", "device_class"}
_NUMBERS_REQUIRED = ["clock_hz", "sram_bytes", "flash_bytes", "cycles_per_mac_int8",
                     "cycles_per_mac_float32", "op_overhead_cycles", "cycles_per_activation",
                     "cycles_per_instruction"]
_NUMBERS_OPTIONAL = ["runtime_flash_bytes", "runtime_sram_bytes", "cycles_per_mac_int16",
                     "cycles_per_elementwise"]
_INTEGERS = {"clock_hz", "sram_bytes", "flash_bytes", "runtime_flash_bytes", "runtime_sram_bytes"}


def builtin_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".toml") or "/" in spec or "\\" in spec


def load_profile(spec) -> DeviceProfile:
    """Load a built-in profile by name, or a user TOML file by path."""
    if isinstance(spec, DeviceProfile):
        return spec
    spec = str(spec)
    if _looks_like_path(spec):
        path = Path(spec)
        if not path.is_file():
            raise BadInput(path, "device profile file not found")
    else:
        path = PROFILE_DIR / f"{spec}.toml"
        if not path.is_file():
            raise BadInput(None, f"unknown device {spec!r}; known devices: {', '.join(builtin_names())}"
                                 " (or give a path to a .toml profile)")
    return parse_profile(path)


def parse_profile(path) -> DeviceProfile:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise BadInput(path, f"not valid TOML: {e}") from None
    except OSError as e:
        raise BadInput(path, f"cannot read device profile: {e.strerror}") from None
    values: dict = {}
    for key in sorted(_TEXT):
        if key not in raw:
            raise BadInput(path, f"missing field {key!r}")
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise BadInput(path, f"field {key!r} must be non-empty text")
        values[key] = raw[key]
    if values["device_class"] not in DEVICE_CLASSES:
        raise BadInput(path, f"field 'device_class' must be one of {', '.join(DEVICE_CLASSES)}")
    for key in _NUMBERS_REQUIRED + _NUMBERS_OPTIONAL:
        if key not in raw:
            if key in _NUMBERS_REQUIRED:
                raise BadInput(path, f"missing field {key!r}")
            continue
        v = raw[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BadInput(path, f"field {key!r} must be a number, got {v!r}")
        if v < 0 or v != v:
            raise BadInput(path, f"field {key!r} must be >= 0, got {v!r}")
        if key in _INTEGERS:
            if float(v) != int(v):
                raise BadInput(path, f"field {key!r} must be a whole number of {'Hz' if key == 'clock_hz' else 'bytes'}")
            v = int(v)
        values[key] = v
    if values["clock_hz"] == 0:
        raise BadInput(path, "field 'clock_hz' must be > 0")
    known = {f.name for f in fields(DeviceProfile)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise BadInput(path, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known - {'source_file'}))}")
    values["description"] = str(raw.get("description", ""))
    if "runtimes" in raw:
        rt = raw["runtimes"]
        if not isinstance(rt, list) or not rt or not all(isinstance(r, str) and r for r in rt):
            raise BadInput(path, "field 'runtimes' must be a non-empty list of runner names, e.g. [\"tflm\"]")
        values["runtimes"] = tuple(rt)
    return DeviceProfile(**values, source_file=str(path))


def load_profiles(specs) -> list[DeviceProfile]:
    """Several profiles; None or [] means every built-in. Accepts a comma-separated string."""
    if specs is None or specs == [] or specs == "":
        specs = builtin_names()
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    profiles = [load_profile(s) for s in specs]
    names = [p.name for p in profiles]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BadInput(None, f"device profile name(s) given twice: {', '.join(dup)}")
    return profiles
