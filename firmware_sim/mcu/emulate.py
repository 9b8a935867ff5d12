"""Run an int8 LSTM model on an emulated Cortex-M4/M7 and measure what it costs.

    from firmware_sim.mcu import run_emulated
    r = run_emulated("model_int8.tflite", x, {"flash_bytes": 1 << 20, "sram_bytes": 256 << 10,
                                              "clock_hz": 80_000_000})

Pipeline: parse the flatbuffer -> lower to integer layers -> generate C (codegen.py) -> build a
DSP-extension ("simd") and a plain-C firmware with arm-none-eabi-gcc, linked against the
profile's flash and SRAM -> run both in qemu-system-arm with semihosting (inputs read from a
file, outputs written back) -> compare with the numpy integer reference and TFLite Micro.

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

import struct
import tempfile
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.fileio import write_bytes, write_npz, write_text

from . import reference
from .codegen import generate_c, plan, render, summary  # noqa: F401  (generate_c re-exported)
from .lower import FcLayer, LstmLayer, SoftmaxLayer, lower
from .toolchain import (BOARDS, ModelTooLarge, build as _build, plugin_path, profile_budget,
                        run_qemu, symbols)

DEFAULT_CPI = {"cortex-m4": 1.3, "cortex-m7": 0.8}
TICK_INSTRUCTIONS = 40          # SysTick at 25 MHz under -icount shift=0 (1 ns per instruction)


def build(src_dir, build_dir, profile=None, board="mps2-an386", variant="simd") -> dict:
    """Compile and link generated sources; raises ModelTooLarge (sizes vs budget) if too big."""
    return _build(src_dir, build_dir, board=board, variant=variant, profile=profile)


def quantize_input(prog, x):
    t = prog.tensor(prog.inputs[0])
    x = np.asarray(x)
    size = t.size
    if x.size % size:
        raise BadInput(None, f"input has {x.size} values, not a multiple of the model input "
                       f"{tuple(t.shape)} ({size} values)")
    if x.dtype == np.int8:
        q = x
    elif np.issubdtype(x.dtype, np.integer):
        if x.min() < -128 or x.max() > 127:
            raise BadInput(None, "integer input outside the int8 range")
        q = x.astype(np.int8)
    else:
        q = np.clip(np.round(x.astype(np.float64) / float(t.scale[0])) + t.zp, -128, 127).astype(np.int8)
    return q.reshape(-1, size)


def _category(name: str) -> str:
    base = name.split(".")[0]
    if base.startswith("mcu_matvec"):
        return "matrix"
    if base in ("mcu_sigmoid_s16", "mcu_tanh_s16"):
        return "activations"
    if base in ("requant_gates", "lstm_cell", "lstm_hidden", "mcu_lstm_step", "widen"):
        return "lstm_rest"
    if base in ("main", "mcu_mark"):
        return "harness"
    return "other_layers"


def _parse_out(path, n_expected, out_bytes):
    data = Path(path).read_bytes()
    magic, n, ib, ob = struct.unpack("<4I", data[:16])
    if magic != 0x3055434D or n != n_expected or ob != out_bytes:
        raise RuntimeError(f"unexpected firmware output header {magic:#x} n={n} out={ob}")
    rec = (ob + 3) // 4 * 4 + 8
    ys, ticks, stack = [], [], []
    for k in range(n):
        r0 = 16 + k * rec
        if r0 + rec > len(data):
            raise RuntimeError(f"firmware wrote {k} of {n} records")
        ys.append(np.frombuffer(data[r0:r0 + ob], np.int8).copy())
        t, s = struct.unpack("<2I", data[r0 + rec - 8:r0 + rec])
        ticks.append(t)
        stack.append(s)
    return np.stack(ys), ticks, stack


def _parse_counts(path, syms):
    lines = Path(path).read_text().splitlines()
    snaps = [np.array(list(map(int, l.split()[1:])), dtype=np.int64) for l in lines
             if l.startswith("snap")]
    names = [s[0] for s in syms] + ["(other)"]
    per = []
    for k in range(0, len(snaps) - 1, 2):
        d = snaps[k + 1] - snaps[k]
        buckets = {names[i]: int(v) for i, v in enumerate(d[1:]) if v}
        per.append(buckets)
    return per


def run_firmware(elf, q_inputs, out_bytes, workdir, board, use_plugin=True, timeout=300):
    """Run one firmware on the given int8 inputs; returns outputs, counts and stack."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_bytes(workdir / "mcu_in.bin", np.ascontiguousarray(q_inputs, dtype=np.int8).tobytes())
    out_file = workdir / "mcu_out.bin"
    if out_file.exists():
        out_file.unlink()
    syms = symbols(elf)
    plugin = plugin_path() if use_plugin else None
    args = []
    counts_file = workdir / "counts.txt"
    if plugin:
        ranges = workdir / "ranges.txt"
        write_text(ranges, "".join(f"{a:x} {b:x}\n" for _, a, b in syms))
        mark = next(a for n, a, b in syms if n == "mcu_mark")
        args = [f"ranges={ranges.resolve()}", f"out={counts_file.resolve()}", f"mark={mark:x}"]
    r = run_qemu(elf, workdir, board=board, plugin=plugin, plugin_args=args, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"firmware exited with {r.returncode}: {(r.stdout + r.stderr)[-500:]}")
    ys, ticks, stack = _parse_out(out_file, len(q_inputs), out_bytes)
    per = _parse_counts(counts_file, syms) if plugin and counts_file.exists() else None
    return {"outputs": ys, "ticks": ticks, "stack": stack, "per_function": per,
            "counter": "tcg-plugin" if per else "systick"}


def _summarize_counts(run, prog):
    """Mean instructions per inference, split by category, from plugin or SysTick data."""
    steps = sum(L.T for L in prog.layers if isinstance(L, LstmLayer))
    macs = sum(L.macs_per_step * L.T for L in prog.layers if isinstance(L, LstmLayer))
    if run["per_function"]:
        per = run["per_function"]
        totals, cats, funcs = [], {}, {}
        for b in per:
            inf = {k: v for k, v in b.items() if _category(k) != "harness"}
            totals.append(sum(inf.values()))
            for k, v in inf.items():
                funcs[k] = funcs.get(k, 0) + v
                c = _category(k)
                cats[c] = cats.get(c, 0) + v
        n = len(per)
        cats = {k: v / n for k, v in cats.items()}
        funcs = {k: v / n for k, v in sorted(funcs.items(), key=lambda kv: -kv[1])}
        kern = sum(v for k, v in funcs.items() if k.split(".")[0] in
                   ("mcu_matvec_gates", "mcu_matvec_s16w", "mcu_matvec_plain"))
        out = {"counter": "tcg-plugin (exact)", "per_inference": float(np.mean(totals)),
               "per_inference_min": int(min(totals)), "per_inference_max": int(max(totals)),
               "split": {k: round(cats.get(k, 0.0), 1) for k in
                         ("matrix", "activations", "lstm_rest", "other_layers")},
               "per_function": {k: round(v, 1) for k, v in funcs.items()}}
        if steps:
            out["per_lstm_step"] = {k: round(cats.get(k, 0.0) / steps, 1) for k in
                                    ("matrix", "activations", "lstm_rest")}
        if macs:
            out["gate_macs"] = int(macs)
            out["matrix_instr_per_mac"] = round(cats.get("matrix", 0.0) / macs, 3)
            out["mac_kernel_instr_per_mac"] = round(kern / macs, 3)
        return out
    ticks = run["ticks"]
    return {"counter": "systick (+-40 instructions)",
            "per_inference": float(np.mean(ticks)) * TICK_INSTRUCTIONS,
            "per_inference_min": int(min(ticks)) * TICK_INSTRUCTIONS,
            "per_inference_max": int(max(ticks)) * TICK_INSTRUCTIONS, "split": None}


def _tflm_compare(tflite_path, q, arena="reported"):
    from groundfloor import tflm
    try:
        res = tflm.run(tflite_path, q, reset_every=1)
    except RuntimeError as e:
        return {"status": "error", "error": str(e)}
    out = {"status": "ok", "outputs": res["outputs"][0].astype(np.int8),
           "arena_reported_bytes": res.get("arena_reported")}
    if arena == "search":
        out["arena_min_bytes"] = tflm.min_arena(tflite_path, q[0])["min_arena_bytes"]
    return out


def run_emulated(tflite_path, x, profile, board="mps2-an386", workdir=None, *,
                 compare_tflm=True, tflm_arena="reported", plain=True, plain_samples=4,
                 use_plugin=True, timeout=600) -> dict:
    """Build and run the model on the emulated board; see the module docstring.

    x: float inputs (quantized with the model's input scale/zero point) or int8, shaped
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
    arena_reported_bytes, ram_vs_tflm_arena, ...}; sizes when too_large.
    """
    if board not in BOARDS:
        raise BadInput(None, f"unknown board {board!r}; use one of {', '.join(BOARDS)}")
    budget = profile_budget(profile)
    prog = lower(tflite_path)
    q = quantize_input(prog, x)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mcu-")
        workdir = tmp.name
    workdir = Path(workdir)
    try:
        pl = plan(prog)
        header, source = render(prog, pl)
        src = workdir / "src"
        write_text(src / "model.h", header)
        write_text(src / "model.c", source)
        info = summary(prog, pl, src)
        cpu = BOARDS[board]["cpu"]
        cpi = budget.get("cpi", DEFAULT_CPI[cpu])
        result = {"status": "ok", "board": board, "core": BOARDS[board]["core"],
                  "device": budget["name"], "model": str(tflite_path), "n_inputs": int(len(q)),
                  "arena_bytes": info["arena_bytes"], "plan": info, "cpi_assumed": cpi,
                  "clock_hz": budget["clock_hz"]}
        tout = prog.tensor(prog.outputs[0])
        try:
            b = build(src, workdir / f"build_simd_{board}", budget, board, "simd")
        except ModelTooLarge as e:
            result.update(status="too_large", error=str(e), sizes=e.sizes)
            return result
        except RuntimeError as e:
            result.update(status="error", error=str(e))
            return result
        try:
            run = run_firmware(b["elf"], q, tout.size, workdir / "run_simd", board, use_plugin,
                               timeout)
        except RuntimeError as e:
            result.update(status="error", error=str(e))
            return result
        y = run["outputs"].reshape((len(q),) + tuple(tout.shape[1:]) if len(tout.shape) > 1
                                   else (len(q), -1))
        ref = np.stack([reference.run(prog, xi)[0].reshape(-1) for xi in q])
        ref_diff = int(np.abs(ref.astype(int) - run["outputs"].astype(int)).max())
        counts = _summarize_counts(run, prog)
        stack_hw = int(max(run["stack"]))
        result.update({
            "outputs_int8": y,
            "outputs": (y.astype(np.float64) - tout.zp) * float(tout.scale[0]),
            "output_scale": float(tout.scale[0]), "output_zero_point": tout.zp,
            "instructions": counts,
            "instructions_per_inference": counts["per_inference"],
            "flash_bytes": b["flash_bytes"], "text_rodata_bytes": b["text_rodata"],
            "ram_bytes": b["static_ram_bytes"] + stack_hw,
            "ram": {"static_bytes": b["static_ram_bytes"], "stack_high_water_bytes": stack_hw,
                    "model_arena_bytes": info["arena_bytes"]},
            "budget": {"flash_bytes": b["flash_budget"], "sram_bytes": b["sram_budget"]},
            "reference_max_lsb_diff": ref_diff,
        })
        if budget["clock_hz"]:
            result["latency_s"] = counts["per_inference"] * cpi / budget["clock_hz"]
        if ref_diff > 1:
            result["status"] = "mismatch"
        if plain:
            k = min(len(q), max(1, plain_samples))
            try:
                bp = build(src, workdir / f"build_plain_{board}", budget, board, "plain")
                rp = run_firmware(bp["elf"], q[:k], tout.size, workdir / "run_plain", board,
                                  use_plugin, timeout)
            except (RuntimeError, ModelTooLarge) as e:
                result["plain"] = {"status": "error", "error": str(e)}
                plain = False
        if plain:
            cp = _summarize_counts(rp, prog)
            same = bool(np.array_equal(rp["outputs"], run["outputs"][:k]))
            # compare like with like: the SIMD mean over the same first k inputs
            simd_k = float(np.mean(run["ticks"][:k])) * TICK_INSTRUCTIONS
            if run["per_function"]:
                simd_k = float(np.mean([sum(v for f, v in b_.items() if _category(f) != "harness")
                                        for b_ in run["per_function"][:k]]))
            result["plain"] = {"instructions": cp, "flash_bytes": bp["flash_bytes"],
                               "outputs_identical": same}
            result["simd_vs_plain"] = round(simd_k / cp["per_inference"], 4)
            if not same:
                result["status"] = "mismatch"
        if compare_tflm:
            t = _tflm_compare(tflite_path, q, tflm_arena)
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
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


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
