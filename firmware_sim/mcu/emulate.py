"""Run an int8 (or 16x8) LSTM model on an emulated Cortex-M4/M7 and measure what it costs.

    from firmware_sim.mcu import run_emulated
    r = run_emulated("model_int8.tflite", x, {"flash_bytes": 1 << 20, "sram_bytes": 256 << 10,
                                              "clock_hz": 80_000_000})

Pipeline: parse the flatbuffer -> lower to integer layers (lower.py) -> generate C (codegen.py,
arena.py) -> build a DSP-extension ("simd") and a plain-C firmware with arm-none-eabi-gcc,
linked against the profile's flash and SRAM (toolchain.py) -> run both in qemu-system-arm with
semihosting, inputs read from a file and outputs written back (firmware.py) -> compare with the
numpy integer reference (reference.py) and TFLite Micro.

Instruction counts are exact: a small TCG plugin (mcu_icount_plugin.c, built with the host
gcc against QEMU's plugin ABI) counts every executed instruction per function and snapshots
the counters when the firmware calls its marker before and after each inference. Without the
plugin the SysTick timer is used (deterministic under -icount shift=0: one tick = 40
instructions on the MPS2 boards' 25 MHz clock), which is accurate to about 40 instructions.

Latency assumptions (device latency = instructions x CPI / clock_hz): QEMU counts
instructions, not cycles. We assume CPI 1.3 for Cortex-M4 (single-issue 3-stage pipeline:
ALU, SMLAD, SXTB16, SMMULR and SSAT take 1 cycle, loads 1-2 (LDRD 2-3), taken branches 2-4;
this int8 kernel mix with zero-wait-state memory lands around 1.2-1.4) and CPI 0.8 for
Cortex-M7 (dual issue, loads and branches from TCM; caches off or cold and flash wait
states push it back toward 1). Flash wait states at high clocks (without an accelerator or
cache), bus contention and interrupts are not modelled. A profile's "cycles_per_instruction"
(or "cpi") overrides these defaults.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput

from . import reference
from .codegen import write_sources
from .firmware import inference_instructions, run_firmware, summarize_counts
from .lower import lower
from .quant import dequantize, quantize_input
from .toolchain import BOARDS, ModelTooLarge, build, profile_budget

DEFAULT_CPI = {"cortex-m4": 1.3, "cortex-m7": 0.8}


def _tflm_compare(tflite_path, q, input_shape, arena="reported"):
    """TFLite Micro on the same integer inputs: its outputs and arena (reported, or searched)."""
    from groundfloor import tflm
    try:
        res = tflm.run(tflite_path, q, reset_every=1)
    except RuntimeError as e:
        return {"status": "error", "error": str(e)}
    out = {"status": "ok", "outputs": res["outputs"][0].astype(q.dtype),
           "arena_reported_bytes": res.get("arena_reported")}
    if arena == "search":
        x0 = q[0].reshape(input_shape)
        out["arena_min_bytes"] = tflm.min_arena(tflite_path, x0)["min_arena_bytes"]
    return out


@contextmanager
def _workdir(workdir):
    if workdir is not None:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="mcu-") as tmp:
        yield Path(tmp)


def _run_simd(result, src, wd, budget, board, q, out_bytes, use_plugin, timeout):
    """Build and run the DSP firmware: (build, run), or None with the failure in result."""
    try:
        b = build(src, wd / f"build_simd_{board}", budget, board, "simd")
    except ModelTooLarge as e:
        result.update(status="too_large", error=str(e), sizes=e.sizes)
        return None
    except RuntimeError as e:
        result.update(status="error", error=str(e))
        return None
    try:
        run = run_firmware(b["elf"], q, out_bytes, wd / "run_simd", board, use_plugin, timeout)
    except RuntimeError as e:
        result.update(status="error", error=str(e))
        return None
    return b, run


def _measurements(prog, q, b, run, info, budget, cpi) -> dict:
    """Outputs, instruction counts, sizes and latency of the DSP run; its difference from the
    numpy integer reference."""
    tout = prog.tensor(prog.outputs[0])
    y = run["outputs"].reshape((len(q),) + tuple(tout.shape[1:]) if len(tout.shape) > 1
                               else (len(q), -1))
    ref = np.stack([reference.run(prog, xi)[0].reshape(-1) for xi in q])
    ref_diff = int(np.abs(ref.astype(int) - run["outputs"].astype(int)).max())
    counts = summarize_counts(run, prog)
    stack_hw = int(max(run["stack"]))
    out = {
        "outputs_int8": y,
        "outputs": dequantize(y, tout.sc, tout.zp),
        "output_scale": tout.sc, "output_zero_point": tout.zp,
        "instructions": counts,
        "instructions_per_inference": counts["per_inference"],
        "flash_bytes": b["flash_bytes"], "text_rodata_bytes": b["text_rodata"],
        "ram_bytes": b["static_ram_bytes"] + stack_hw,
        "ram": {"static_bytes": b["static_ram_bytes"], "stack_high_water_bytes": stack_hw,
                "model_arena_bytes": info["arena_bytes"]},
        "budget": {"flash_bytes": b["flash_budget"], "sram_bytes": b["sram_budget"]},
        "reference_max_lsb_diff": ref_diff,
    }
    if budget["clock_hz"]:
        out["latency_s"] = counts["per_inference"] * cpi / budget["clock_hz"]
    return out


def _add_plain(result, prog, src, wd, budget, board, q, run, k, use_plugin, timeout):
    """The plain-C build on the first k inputs: its counts, and the SIMD/plain instruction ratio."""
    try:
        bp = build(src, wd / f"build_plain_{board}", budget, board, "plain")
        rp = run_firmware(bp["elf"], q[:k], prog.tensor(prog.outputs[0]).nbytes, wd / "run_plain",
                          board, use_plugin, timeout)
    except (RuntimeError, ModelTooLarge) as e:
        result["plain"] = {"status": "error", "error": str(e)}
        return
    cp = summarize_counts(rp, prog)
    same = bool(np.array_equal(rp["outputs"], run["outputs"][:k]))
    result["plain"] = {"instructions": cp, "flash_bytes": bp["flash_bytes"], "outputs_identical": same}
    # compare like with like: the SIMD mean over the same first k inputs
    result["simd_vs_plain"] = round(inference_instructions(run, k) / cp["per_inference"], 4)
    if not same:
        result["status"] = "mismatch"


def _add_tflm(result, tflite_path, prog, q, run, tflm_arena):
    t = _tflm_compare(tflite_path, q, prog.tensor(prog.inputs[0]).shape, tflm_arena)
    if t.get("status") == "ok":
        d = np.abs(t["outputs"].astype(int) - run["outputs"].astype(int))
        t["max_lsb_diff"] = int(d.max())
        t["bit_exact_fraction"] = float(np.mean(np.all(d == 0, axis=1)))
        arena = t.get("arena_min_bytes") or t.get("arena_reported_bytes")
        if arena:
            t["ram_vs_tflm_arena"] = round(result["ram_bytes"] / arena, 3)
        t.pop("outputs")
        if t["max_lsb_diff"] > 1:
            result["status"] = "mismatch"
    result["tflm"] = t


def run_emulated(tflite_path, x, profile, board="mps2-an386", workdir=None, *,
                 compare_tflm=True, tflm_arena="reported", plain=True, plain_samples=4,
                 use_plugin=True, timeout=600) -> dict:
    """Build and run the model on the emulated board; see the module docstring.

    x: float inputs (quantized with the model's input scale/zero point) or int8 codes (int16
    for a 16x8 model: outputs_int8 then holds int16 codes), shaped
    [N, *input_shape] or [*input_shape]. profile: dict (or TOML path) with flash_bytes,
    sram_bytes, clock_hz and optionally cycles_per_instruction. board: "mps2-an386" (M4) or
    "mps2-an500" (M7). Bad input (model with an unsupported op, bad profile) raises BadInput.

    Returned keys: status ("ok" | "too_large" | "mismatch" | "error"), error, outputs (float,
    dequantized) and outputs_int8 [N, ...]; instructions_per_inference and instructions
    {per_inference (mean), min, max, split {matrix, activations, lstm_rest, other_layers},
    per_lstm_step (per layer-step), matrix_instr_per_mac, mac_kernel_instr_per_mac,
    per_function}; flash_bytes (text+rodata+data), ram_bytes (data+bss + stack high-water),
    ram {...}; latency_s (= instructions x CPI / clock); plain {instructions, flash_bytes,
    outputs_identical} and simd_vs_plain (instruction ratio on the same inputs);
    reference_max_lsb_diff (vs the numpy integer reference); tflm {max_lsb_diff,
    arena_reported_bytes, ram_vs_tflm_arena, arena_min_bytes with tflm_arena="search", ...};
    sizes when too_large.
    """
    if board not in BOARDS:
        raise BadInput(None, f"unknown board {board!r}; use one of {', '.join(BOARDS)}")
    budget = profile_budget(profile)
    prog = lower(tflite_path)
    q = quantize_input(prog, x)
    with _workdir(workdir) as wd:
        src = wd / "src"
        info = write_sources(prog, src)
        cpi = budget.get("cpi", DEFAULT_CPI[BOARDS[board]["cpu"]])
        result = {"status": "ok", "board": board, "core": BOARDS[board]["core"],
                  "device": budget["name"], "model": str(tflite_path), "n_inputs": int(len(q)),
                  "arena_bytes": info["arena_bytes"], "plan": info, "cpi_assumed": cpi,
                  "clock_hz": budget["clock_hz"]}
        simd = _run_simd(result, src, wd, budget, board, q, prog.tensor(prog.outputs[0]).nbytes,
                         use_plugin, timeout)
        if simd is None:
            return result
        b, run = simd
        result.update(_measurements(prog, q, b, run, info, budget, cpi))
        if result["reference_max_lsb_diff"] > 1:
            result["status"] = "mismatch"
        if plain:
            k = min(len(q), max(1, plain_samples))
            _add_plain(result, prog, src, wd, budget, board, q, run, k, use_plugin, timeout)
        if compare_tflm:
            _add_tflm(result, tflite_path, prog, q, run, tflm_arena)
        return result


def to_jsonable(result: dict) -> dict:
    """numpy arrays -> lists, for JSON reports."""
    def conv(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.floating,)):
            return float(v)
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    return conv(result)
