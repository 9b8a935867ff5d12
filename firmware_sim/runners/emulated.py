"""The emulated Cortex-M runner: the int8 whole-sequence .tflite -> generated C -> firmware in QEMU
(firmware_sim.mcu.run_emulated) on every MCU profile whose core QEMU emulates, with its own
result cache (per artifact sha256, profile, board, windows, emulator sources and tool versions)."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from groundfloor.isolate import run_isolated
from groundfloor.versions import version_of

from .base import Runner, io_dtype, load_x

EMULATED_BOARDS = {"cortex-m4f": "mps2-an386", "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}
EMULATED_WINDOWS = 24   # windows QEMU runs per artifact and device (instruction counts, sizes, QEMU = host)
MCU_DIR = Path(__file__).resolve().parent.parent / "mcu"
_PROFILE_KEYS = ("name", "flash_bytes", "sram_bytes", "clock_hz", "cycles_per_instruction")
_CACHED_STATUSES = ("ok", "mismatch", "too_large")


def emulation_board(profile) -> tuple[str | None, str]:
    """(QEMU board, "") for a profile whose core is emulated, else (None, why not)."""
    core = (getattr(profile, "core", "") or "").lower()
    if profile.device_class != "mcu":
        return None, (f"not emulated: {profile.name} is a {profile.device_class} device ({core}); "
                      "the emulated firmware is bare-metal Cortex-M")
    if core in EMULATED_BOARDS:
        return EMULATED_BOARDS[core], ""
    if "xtensa" in core:
        return None, (f"not emulated: {core} is an Xtensa core; qemu-system-arm emulates Arm Cortex-M "
                      "only (the cost-model estimate stands alone)")
    return None, f"not emulated: no QEMU board for core {core!r} (emulated: {', '.join(EMULATED_BOARDS)})"


def _tool_version(exe: str) -> str:
    path = shutil.which(exe)
    if not path:
        return ""
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return exe


def _mcu_code_hash() -> str:
    """Hash of the emulator's sources and the toolchain versions: a cached result is reused only
    for the same generator, kernels, firmware and tools."""
    from groundfloor.cache import code_hash
    files = [f for f in MCU_DIR.iterdir() if f.suffix in (".py", ".c", ".h", ".ld")]
    tools = [v for v in (_tool_version("arm-none-eabi-gcc"), _tool_version("qemu-system-arm")) if v]
    return code_hash(files, tools + [str(version_of("tflite-micro"))])


def child_emulated(model_path, x_path, out_path, profile, board, n):
    """Isolated child: run_emulated on the first n windows; writes int8 and float outputs to
    out_path; returns the JSON-able summary (no arrays)."""
    from firmware_sim.mcu import run_emulated, to_jsonable
    from groundfloor.fileio import write_npz
    x = load_x(x_path, n)
    r = run_emulated(model_path, x, profile, board=board, plain=True, plain_samples=min(4, len(x)))
    if "outputs" in r:
        write_npz(out_path, out_0=np.asarray(r["outputs"], np.float32), q_0=np.asarray(r["outputs_int8"]))
    r = to_jsonable({k: v for k, v in r.items() if k not in ("outputs", "outputs_int8", "model", "plan")})
    return r


def _instructions(ins: dict) -> dict:
    split = ins.get("split") or {}
    total = ins.get("per_inference")
    return {"kind": "emulated", "counter": ins.get("counter"), "per_inference": total,
            "min": ins.get("per_inference_min"), "max": ins.get("per_inference_max"),
            "split": split,
            "split_pct": {k: round(100.0 * v / total, 1) for k, v in split.items()} if total else None,
            "per_lstm_step": ins.get("per_lstm_step"), "gate_macs": ins.get("gate_macs"),
            "matrix_instr_per_mac": ins.get("matrix_instr_per_mac"),
            "mac_kernel_instr_per_mac": ins.get("mac_kernel_instr_per_mac"),
            "top_functions": dict(list((ins.get("per_function") or {}).items())[:8])}


def _emulated_summary(r: dict, profile, arena_min=None) -> dict:
    """The per-device figures bench.json keeps from one run_emulated result."""
    plain = r.get("plain") or {}
    pins = plain.get("instructions") or {}
    tflm = r.get("tflm") or {}
    out = {"status": r.get("status"), "error": r.get("error", ""), "board": r.get("board"), "core": r.get("core"),
           "kind": "emulated", "windows": r.get("n_inputs"),
           "instructions": _instructions(r.get("instructions") or {}),
           "plain_c": {"instructions_per_inference": pins.get("per_inference"),
                       "matrix_instr_per_mac": pins.get("matrix_instr_per_mac"),
                       "flash_bytes": plain.get("flash_bytes"), "outputs_identical": plain.get("outputs_identical"),
                       "status": plain.get("status", "ok" if pins else None), "error": plain.get("error")},
           "simd_vs_plain": r.get("simd_vs_plain"),
           "flash_bytes": r.get("text_rodata_bytes"), "image_bytes": r.get("flash_bytes"),
           "ram_bytes": r.get("ram_bytes"), "ram": r.get("ram"),
           "reference_max_lsb_diff": r.get("reference_max_lsb_diff"),
           "tflm": {"status": tflm.get("status"), "error": tflm.get("error"),
                    "max_lsb_diff": tflm.get("max_lsb_diff"), "bit_exact_fraction": tflm.get("bit_exact_fraction"),
                    "arena_reported_bytes": tflm.get("arena_reported_bytes"),
                    "ram_vs_arena_reported": tflm.get("ram_vs_tflm_arena")} if tflm else None,
           "cycles_per_instruction": r.get("cpi_assumed"), "clock_hz": r.get("clock_hz")}
    if r.get("status") == "too_large":
        out["sizes"] = r.get("sizes")
    if arena_min and out["ram_bytes"]:
        out["tflm_arena_bytes"] = int(arena_min)
        out["ram_vs_tflm_arena"] = round(out["ram_bytes"] / arena_min, 3)
    elif tflm.get("arena_reported_bytes") and out["ram_bytes"]:
        out["tflm_arena_bytes"] = tflm["arena_reported_bytes"]
        out["ram_vs_tflm_arena"] = tflm.get("ram_vs_tflm_arena")
    total = out["instructions"]["per_inference"]
    if total and profile.clock_hz:
        cycles = total * profile.cycles_per_instruction
        out["latency_us"] = round(cycles / profile.clock_hz * 1e6, 3)
        out["cycles"] = round(cycles)
    return out


class EmulatedRunner(Runner, name="emulated", formats=("tflite",), child=child_emulated):
    """int8 (or 16x8) TFLite -> generated C -> Cortex-M firmware (SIMD and plain C) in
    qemu-system-arm, exact instruction counts from a TCG plugin.

    Runs the int8 (or 16x8) whole-sequence .tflite through firmware_sim.mcu.run_emulated on every MCU
    profile whose core QEMU emulates (Cortex-M4F -> mps2-an386, Cortex-M7 -> mps2-an500), on the
    first EMULATED_WINDOWS evaluation windows. Results are cached per (artifact sha256, profile,
    board, windows, emulator code/tool versions) in the bench cache directory."""
    kind = "emulated"
    windows = EMULATED_WINDOWS

    def available(self):
        missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if not shutil.which(t)]
        if missing:
            return False, (f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
                           "libnewlib-arm-none-eabi qemu-system-arm)")
        return True, ""

    def accepts(self, artifact):
        if artifact.get("streaming"):
            return False, "emulated runs cover whole-sequence models (streaming: calibrated estimate per step)"
        if io_dtype(artifact) not in ("int8", "int16"):   # int16: 16x8 (int16 activations, int8 weights)
            return False, "the emulated firmware runs fully-int8 and 16x8 TFLite models"
        return True, ""

    def _emulate(self, job: dict, prof, board: str) -> tuple[dict | None, bool, int, dict | None]:
        """One profile: (result record, cached, child peak RSS, failure record); from the cache when
        the same artifact, board, profile figures, windows and emulator code ran before."""
        from groundfloor.cache import key_of
        pdict = {k: getattr(prof, k) for k in _PROFILE_KEYS}
        key = key_of(job["sha"], board, pdict, job["n"], job["code"])
        cached = job["cache"].get("emulated", key)
        if cached is not None:
            return cached, True, 0, None
        tmp_out = Path(str(job["out_path"]) + f".{board}.npz")
        r = run_isolated(self.target, {"model_path": str(job["model_path"]), "x_path": str(job["x_path"]),
                                       "out_path": str(tmp_out), "profile": pdict, "board": board, "n": job["n"]},
                         timeout=job["timeout"])
        if not r.ok:
            return None, False, r.peak_rss_bytes or 0, {"status": r.status, "error": r.error, "board": board,
                                                        "stderr_tail": (r.stderr_tail or "").splitlines()[-5:]}
        res = {"result": r.value, "outputs": None, "outputs_int8": None}
        if tmp_out.exists():
            with np.load(tmp_out) as d:
                res["outputs"], res["outputs_int8"] = d["out_0"].tolist(), d["q_0"].tolist()
            tmp_out.unlink()
        res["seconds"] = round(r.seconds, 3)
        if res["result"].get("status") in _CACHED_STATUSES:
            job["cache"].put("emulated", key, {**res, "key": {"sha256": job["sha"], "board": board, "profile": pdict,
                                                             "windows": job["n"], "code": job["code"]}})
        return res, False, r.peak_rss_bytes or 0, None

    def _host_check(self, job: dict, x_path, n_all: int) -> dict:
        """The generated C built for the host on every evaluation window, compared with TFLite
        Micro code for code (firmware_sim.mcu.host_check); cached like the QEMU runs."""
        import tempfile
        from groundfloor import tflite_file
        from groundfloor.cache import key_of
        from groundfloor.fileio import write_npz
        from groundfloor.ioquant import quantize_input
        key = key_of(job["sha"], "host", n_all, job["code"])
        cached = job["cache"].get("host_check", key)
        if cached is not None:
            return {**cached, "cached": True}
        from firmware_sim.mcu import host_check
        with tempfile.TemporaryDirectory(prefix="edge-host-check-") as tmp:
            xq, yq = Path(tmp) / "x.npz", Path(tmp) / "y.npz"
            try:
                io = tflite_file.summary(job["model_path"])["io"]["inputs"][0]
                write_npz(xq, x=quantize_input(load_x(x_path, n_all), io))
                res = host_check(job["model_path"], xq, yq, timeout=job["timeout"])
            except Exception as e:   # a refused or unreadable model: the QEMU runs report it per device
                return {"status": "error", "error": f"{type(e).__name__}: {e}", "cached": False}
            if yq.exists():
                with np.load(yq) as d:
                    res["outputs_int8"], res["outputs"] = d["y"].tolist(), d["y_float"].tolist()
        res.pop("host", None)
        if res.get("status") in ("ok", "mismatch"):
            job["cache"].put("host_check", key, res)
        return {**res, "cached": False}

    def run(self, model_path, x_path, out_path, config, extra=None):
        from groundfloor.cache import ResultCache   # (parent side: runner children stay light)
        extra = extra or {}
        t0 = time.perf_counter()
        sha = extra.get("sha256") or ""
        arena_min = (extra.get("tflm_arena") or {}).get("min_arena_bytes")
        n_avail = int(np.load(x_path)["x"].shape[0])
        n = min(self.windows, n_avail, config.max_samples or n_avail)
        job = {"sha": sha, "n": n, "code": _mcu_code_hash(), "model_path": model_path, "x_path": x_path,
               "out_path": out_path, "timeout": max(config.timeout_s, 600.0),
               "cache": ResultCache(extra.get("cache_dir") if sha else None)}
        n_all = min(n_avail, config.max_samples or n_avail)
        host = self._host_check(job, x_path, n_all)
        devices, outputs, problems, cached_all, rss = {}, None, [], bool(host.get("cached")), None
        first_q = None
        host_q = np.asarray(host["outputs_int8"]) if host.get("outputs_int8") is not None else None
        for prof in extra.get("profiles") or []:
            board, why = emulation_board(prof)
            if board is None:
                devices[prof.name] = {"status": "not_emulated", "reason": why}
                continue
            res, cached, peak, failed = self._emulate(job, prof, board)
            if not cached:
                cached_all = False
                rss = max(rss or 0, peak) or rss
            if failed is not None:
                devices[prof.name] = failed
                problems.append(f"{prof.name}: {failed['status']}: {failed['error']}")
                continue
            summ = _emulated_summary(res["result"], prof, arena_min)
            summ.update(cached=cached, seconds=res.get("seconds"))
            devices[prof.name] = summ
            if summ["status"] not in ("ok",):
                problems.append(f"{prof.name}: {summ['status']}: {summ.get('error') or ''}".rstrip(": "))
            if res.get("outputs") is not None:
                q = np.asarray(res["outputs_int8"])
                if host_q is not None:   # the firmware in QEMU against the same C built for the host
                    summ["qemu_equals_host"] = {"windows": int(len(q)), "equal": bool(
                        np.array_equal(q.reshape(len(q), -1), host_q[:len(q)].reshape(len(q), -1)))}
                if outputs is None:
                    outputs, first_q = np.asarray(res["outputs"], np.float32), q
                else:
                    summ["outputs_identical_to_first_board"] = bool(np.array_equal(q, first_q))
        if host.get("outputs") is not None:   # outputs and drift over every window, not QEMU's first n
            outputs = np.asarray(host["outputs"], np.float32)
        return self._record(t0, n, job["code"], devices, outputs, problems, cached_all, rss, out_path, host)

    def _record(self, t0, n, code, devices, outputs, problems, cached_all, rss, out_path, host) -> dict:
        host_summary = {k: host.get(k) for k in ("status", "error", "windows", "windows_equal_to_tflm",
                                                 "max_lsb_diff", "bit_exact", "cached")}
        n_out = int(len(outputs)) if outputs is not None else 0
        rec = {"runner": self.name, "runner_kind": self.kind, "seconds": round(time.perf_counter() - t0, 3),
               "details": {"plan": "whole", "windows_emulated": n, "n_samples": n_out, "cached": cached_all,
                           "devices": devices, "code_hash": code, "host_build": host_summary,
                           "note": (f"outputs and drift on {n_out} evaluation windows from the generated C built "
                                    f"for the host ({host_summary['windows_equal_to_tflm']} of "
                                    f"{host_summary['windows']} windows equal TFLite Micro's codes); QEMU runs "
                                    f"the first {n} per device for exact instruction counts (TCG plugin) and "
                                    "checks the firmware equals the host build there; cycles = instructions "
                                    "x the profile's cycles_per_instruction (an assumption)")
                           if host.get("outputs") is not None else
                           (f"first {n} evaluation windows emulated (host build: {host.get('status')}: "
                            f"{host.get('error') or ''}); instruction counts are exact (TCG plugin)")}}
        if rss:   # not a runtime's footprint: kept apart from peak_rss_bytes (memory totals use that)
            rec["host_rss_bytes"] = {"value": rss, "kind": "measured",
                                     "note": "peak resident set of the emulation driver process on this host"}
        if outputs is not None:
            from groundfloor.fileio import write_npz
            write_npz(out_path, out_0=outputs)
            rec["status"], rec["error"] = "ok", ""
            if problems:
                rec["warnings"] = problems
        elif not any(d.get("status") != "not_emulated" for d in devices.values()):
            rec.update(status="not_applicable", reason="no emulated device among the benched profiles: " + "; ".join(
                f"{k}: {d['reason']}" for k, d in devices.items()) if devices else "no device profiles given")
        else:
            rec.update(status="error", error="; ".join(problems) or "no outputs")
        return rec

    def device_figures(self, profile, record):
        d = ((record.get("details") or {}).get("devices") or {}).get(profile.name)
        if not d:
            return None
        if d.get("status") != "ok" or not (d.get("instructions") or {}).get("per_inference"):
            return {"latency": None, "memory": None, "details": d}
        from firmware_sim.latency import instructions_to_latency
        lat = instructions_to_latency(d["instructions"]["per_inference"], profile)
        lat.update({"board": d.get("board"), "windows": d.get("windows"), "counter": d["instructions"].get("counter"),
                    "per": "window", "cached": d.get("cached")})
        # the fit stays on the TFLite Micro basis (the .tflite is deployed with TFLM); the emulated
        # firmware's own flash/RAM are reported beside it under devices.<profile>.emulated
        return {"latency": lat, "memory": None, "details": d}

    def device_details(self, profile, record):
        return ((record.get("details") or {}).get("devices") or {}).get(profile.name)
