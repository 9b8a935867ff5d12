"""The TFLite Micro runner (the tflite-micro package's host build) and its extra: the exact
minimum arena of each artifact (groundfloor.tflm's search), cached per file sha256 and TFLM
version, which the timed run uses (plus headroom) and the memory figures report."""
from __future__ import annotations

import os

from groundfloor.isolate import run_isolated
from groundfloor.versions import version_of

from .base import Runner, drive, finish, io_spec, load_x, plan_chunks, prep_input, spec_record

ARENA_HEADROOM = 1024   # bytes over the exact minimum for the timed run


def _specs(it, n_out):
    return [io_spec(it.get_input_details(0))], [io_spec(it.get_output_details(k)) for k in range(n_out)]


def _num_outputs(model_path) -> int:
    from groundfloor.tflite_file import read
    return len(read(model_path).subgraphs[0].outputs)


# groundfloor.tflm, tflite_file and cache are imported where used: every runner child imports this
# package, and its peak RSS is a reported figure (the host footprint of the runtime alone)

def child_tflm(model_path, x_path, out_path, cfg):
    from groundfloor import tflm
    arena = cfg.get("arena_bytes")
    it = tflm.interpreter(model_path, arena or 0)
    ins, outs = _specs(it, _num_outputs(model_path))
    x = load_x(x_path, cfg["max_samples"])
    plan = plan_chunks(ins[0][0], x)
    arrays = drive(x, plan, ins[0], outs, set_input=lambda a: it.set_input(a, 0), invoke=it.invoke,
                   get_output=lambda k: it.get_output(k), reset=it.reset, cfg=cfg)
    return finish(out_path, arrays, {"plan": plan, "arena_bytes": arena,
                                     "inputs": [spec_record(s) for s in ins],
                                     "outputs_spec": [spec_record(s) for s in outs]})


def child_tflm_arena_search(model_path, x_path, max_arena_bytes=64 << 20):
    """The exact minimum arena for the first window of x_path, as the model wants its input
    (quantized for integer models): groundfloor.tflm.arena_search_child."""
    from groundfloor import tflm
    x = load_x(x_path, 1)
    it = tflm.interpreter(model_path, max(16 * os.path.getsize(model_path), 1 << 20))
    spec = _specs(it, 1)[0][0]
    del it
    plan = plan_chunks(spec[0], x)
    xw = x[0][None] if plan == "whole" else x[0][0][None, None]
    x_in = prep_input(xw.reshape(spec[0]), spec[1], spec[2], spec[3])
    return tflm.arena_search_child(model_path, x_in, max_arena_bytes)


def arena_search(model_path, x_path, sha256: str, cache_dir=None, timeout=300.0) -> dict:
    """The exact TFLM arena minimum for one artifact, cached per file sha256 and TFLM version."""
    from groundfloor.cache import ResultCache
    version = version_of("tflite-micro")
    cache = ResultCache(cache_dir if sha256 else None)
    key = sha256[:32]
    rec = cache.get("arena", key, valid=lambda r: r.get("tflm_version") == version and r.get("sha256") == sha256)
    if rec is not None:
        return {**rec, "cached": True}
    res = run_isolated("firmware_sim.runners.tflm:child_tflm_arena_search",
                       {"model_path": str(model_path), "x_path": str(x_path)}, timeout=timeout)
    if not res.ok:
        return {"status": res.status, "error": res.error, "seconds": round(res.seconds, 3)}
    rec = {"status": "ok", **res.value, "sha256": sha256, "tflm_version": version, "kind": "measured",
           "note": "64-bit host build of TFLite Micro: pointer-sized structures make it somewhat "
                   "larger than on a 32-bit microcontroller"}
    cache.put("arena", key, rec)
    return {**rec, "cached": False}


class TFLMRunner(Runner, name="tflm", formats=("tflite",), child=child_tflm):
    """TFLite Micro host build (tflite-micro), arena from the exact arena search."""

    def accepts(self, artifact):
        # Every .tflite: a microcontroller with an FPU runs float models in TFLite Micro too, and
        # the best-choice rule counts an artifact for a device only when its runtime ran it.
        return True, ""

    def prepare(self, model_path, x_path, config, extra, progress):
        """The exact arena search (cached), before the run that uses it."""
        progress(f"[bench]   {self.name} arena search")
        arena = arena_search(model_path, x_path, extra.get("sha256") or "", cache_dir=extra.get("cache_dir"),
                             timeout=max(config.timeout_s, 60))
        if arena.get("status") != "ok":
            return {"arena": arena}, {"runner": self.name, "runner_kind": self.kind,
                                      "status": arena.get("status", "error"),
                                      "error": f"arena search failed: {arena.get('error', '')}", "arena": arena}
        return {"arena": arena}, None

    def child_kwargs(self, model_path, x_path, out_path, config, extra):
        kw = super().child_kwargs(model_path, x_path, out_path, config, extra)
        arena = config.arena_bytes or (extra.get("arena") or {}).get("min_arena_bytes")
        # run with a little headroom over the exact minimum
        kw["cfg"]["arena_bytes"] = int(arena + ARENA_HEADROOM) if arena and not config.arena_bytes else arena
        return kw

    def shared_figures(self, record):
        """The arena for the runners after this one ("tflm_arena": the emulated firmware's RAM is
        compared with it) and, when the run itself worked, as the measured RAM basis ("arena")."""
        arena = record.get("arena") or {}
        if arena.get("status") != "ok":
            return {}
        out = {"tflm_arena": arena}
        if record.get("status") == "ok":
            out["arena"] = arena
        return out
