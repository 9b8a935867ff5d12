"""One built firmware run in QEMU on int8 (or 16x8: int16) inputs: outputs, stack, instruction counts.

The firmware (mcu_main.c) writes the outputs, SysTick ticks and stack high-water of every
inference; the TCG plugin (mcu_icount_plugin.c) writes per-function instruction counters,
summarized here per inference.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from groundfloor.fileio import write_bytes, write_text

from .lower import LstmLayer
from .toolchain import plugin_path, run_qemu, symbols

TICK_INSTRUCTIONS = 40          # SysTick at 25 MHz under -icount shift=0 (1 ns per instruction)
# the gate products: the DSP build's MAC loops (local symbols mcu_mac_gate_<n> inside the fused
# step, mcu_kernels.c), the plain build's matrix function (its requantization included)
GATE_MAC_PREFIXES = ("mcu_mac_gate_", "mcu_matvec_plain", "matvec16")


def _category(name: str) -> str:
    base = name.split(".")[0]
    if base.startswith("mcu_mac_fc_"):
        return "other_layers"
    if base.startswith(GATE_MAC_PREFIXES) or base.startswith("mcu_matvec"):
        return "matrix"
    if base in ("mcu_sigmoid_s16", "mcu_tanh_s16"):
        return "activations"
    if base.startswith("mcu_step_") or base in ("lstm_cell", "lstm_hidden", "mcu_lstm_step",
                                                "mcu_matvec_in", "mcu_matvec_rec",
                                                "mcu_lstm16_step"):
        return "lstm_rest"
    if base in ("main", "mcu_mark"):
        return "harness"
    return "other_layers"


def _parse_out(path, n_expected, out_bytes, dtype=np.int8):
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
        ys.append(np.frombuffer(data[r0:r0 + ob], dtype).copy())
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
        buckets = {}
        for i, v in enumerate(d[1:]):     # a function split around a nested symbol: its pieces add up
            if v:
                buckets[names[i]] = buckets.get(names[i], 0) + int(v)
        per.append(buckets)
    return per


def run_firmware(elf, q_inputs, out_bytes, workdir, board, use_plugin=True, timeout=300):
    """Run one firmware on the given inputs (int8 codes, or int16 for a 16x8 model: the outputs
    take the inputs' type); returns outputs, counts and stack. out_bytes: one output's bytes."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dtype = np.int16 if np.asarray(q_inputs).dtype == np.int16 else np.int8
    write_bytes(workdir / "mcu_in.bin", np.ascontiguousarray(q_inputs, dtype=dtype).tobytes())
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
    ys, ticks, stack = _parse_out(out_file, len(q_inputs), out_bytes, dtype)
    per = _parse_counts(counts_file, syms) if plugin and counts_file.exists() else None
    return {"outputs": ys, "ticks": ticks, "stack": stack, "per_function": per,
            "counter": "tcg-plugin" if per else "systick"}


def summarize_counts(run, prog):
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
        kern = sum(v for k, v in funcs.items() if k.split(".")[0].startswith(GATE_MAC_PREFIXES))
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


def inference_instructions(run, k) -> float:
    """Mean instructions per inference over the first k inferences of a run (harness excluded)."""
    if run["per_function"]:
        return float(np.mean([sum(v for f, v in b.items() if _category(f) != "harness")
                              for b in run["per_function"][:k]]))
    return float(np.mean(run["ticks"][:k])) * TICK_INSTRUCTIONS
