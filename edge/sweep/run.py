"""The sweep driver: expand the space, look every variant up in the result cache, run the rest on
Ray, then the per-device Pareto fronts, the recommendation and the report.

Layout (every variant is an ordinary model folder, so `edge check/report/bench` work on it):
    <artifacts>/sweeps/variants/<variant id>/   train/, manifest.json, the artifacts, quantize/
    <reports>/sweeps/variants/<variant id>/bench.json
    <artifacts>/sweeps/cache/variant_<key>.json  a finished variant's result (groundfloor.cache)
    <reports>/sweeps/<sweep name>/               sweep.json, report.md, report.html, figures/, check.toml
The variant id carries its training key: the same grid point on the same data is the same folder
in every sweep, and a widened space trains only the new points.
"""
from __future__ import annotations

import time
from pathlib import Path

from edge.sweep import pareto
from edge.sweep.execute import Job, connect, run_jobs
from edge.sweep.variant import data_identity, pipeline_code, result_key, train_key, user_split, variant_id
from groundfloor.cache import ResultCache

REAL_STEP = "edge.sweep.variant:run_variant"
FAKE_STEP = "edge.sweep.fake:fake_step"


def plan(space, artifacts_dir, reports_dir, target=REAL_STEP, fake=None) -> list[Job]:
    """A Job per grid point with its keys and folders (nothing run yet)."""
    from firmware_sim.profiles import load_profiles
    profiles = load_profiles(space.devices)
    identity, code = data_identity(space), pipeline_code()
    root_a, root_r = Path(artifacts_dir) / "sweeps" / "variants", Path(reports_dir) / "sweeps" / "variants"
    jobs = []
    for i, v in enumerate(space.variants()):
        tkey = train_key(v, identity)
        vid = variant_id(v, tkey)
        ctx = {"variant_id": vid, "train_key": tkey, "task": space.task, "kind": space.kind,
               "data": str(space.data.resolve()) if space.data else None, "candidates": space.candidates,
               "devices": space.devices, "device_names": space.device_names, "bench": space.bench,
               "art_dir": str((root_a / vid).resolve()), "report_dir": str((root_r / vid).resolve())}
        if fake is not None:
            ctx["fake"] = fake
        ctx["result_key"] = result_key(tkey, space, profiles, code + target + repr(sorted((fake or {}).items())))
        jobs.append(Job(i, v, ctx))
    return jobs


def check_data(space):
    """The user's data loads at every window of the space, before any worker starts."""
    if space.data is not None:
        for w in space.axes["window"]:
            user_split(space.data, w, space.kind)


def _cached(cache, job):
    def intact(value):
        return isinstance(value, dict) and Path(job.ctx["art_dir"]).is_dir() and "points" in value
    return cache.get("variant", job.ctx["result_key"], valid=intact)


def run_sweep(space, artifacts_dir="artifacts", reports_dir="reports", ray_address=None, workers=None,
              target=REAL_STEP, fake=None, retries=1, force_ship=False, timeout_s=None, print_fn=print,
              every=30.0, write=True) -> dict:
    """Run (or resume) a sweep; returns its record (what sweep.json holds)."""
    check_data(space)
    jobs = plan(space, artifacts_dir, reports_dir, target, fake)
    cache = ResultCache(Path(artifacts_dir) / "sweeps" / "cache")
    outcomes, todo = {}, []
    for job in jobs:
        hit = _cached(cache, job)
        if hit is not None:
            outcomes[job.index] = {"status": "ok", "value": hit, "cached": True, "attempts": []}
        else:
            todo.append(job)
    print_fn(f"[sweep] {space.name}: {len(jobs)} variants x {len(space.candidates)} candidate(s) x "
             f"{len(space.device_names)} device(s); {len(jobs) - len(todo)} cached, {len(todo)} to run")

    def on_done(job, outcome):
        if outcome["status"] == "ok":
            cache.put("variant", job.ctx["result_key"], outcome["value"])   # now: an interrupt keeps it
        outcomes[job.index] = dict(outcome, cached=False)

    execution = {"slots": None, "seconds": 0.0, "ray": ray_address or "local"}
    if todo:
        import ray
        connect(ray_address, workers)
        try:
            execution.update(run_jobs(todo, target, on_done, print_fn, retries=retries, force_ship=force_ship,
                                      timeout_s=timeout_s, every=every))
        finally:
            # stops an instance the sweep started; from an existing cluster it only disconnects
            ray.shutdown()
    record = assemble(space, jobs, outcomes, execution, artifacts_dir, reports_dir)
    record["simulated"] = target != REAL_STEP   # no model folders: nothing for `edge check` to gate
    if write:
        from edge.sweep.report import write_report
        record["report"] = [str(p) for p in write_report(record, Path(reports_dir) / "sweeps" / space.name)]
    return record


def assemble(space, jobs, outcomes, execution, artifacts_dir, reports_dir) -> dict:
    """The sweep record: every variant with its status, every point, the per-device results."""
    variants, points = [], []
    for job in jobs:
        out = outcomes.get(job.index, {"status": "not_run", "error": "interrupted before it ran", "attempts": []})
        value = out.get("value") or {}
        variants.append({"variant_id": job.ctx["variant_id"], "grid": job.variant, "status": out["status"],
                         "cached": out.get("cached", False), "error": out.get("error", ""),
                         "attempts": out.get("attempts", []), "seconds": round(out.get("seconds") or 0.0, 3),
                         "node": out.get("host"), "params": value.get("params"),
                         "float_metric": value.get("float_metric"), "stage_seconds": value.get("seconds"),
                         "artifacts": value.get("artifacts"), "art_dir": job.ctx["art_dir"],
                         "report_dir": job.ctx["report_dir"]})
        for p in value.get("points", []):
            points.append(dict(p, variant_id=job.ctx["variant_id"], grid=job.variant))
    return {"schema": 1, "name": space.name, "space_file": str(space.path), "task": space.task,
            "data": str(space.data) if space.data else None, "kind": space.kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "axes": space.axes,
            "candidates": space.candidates, "devices": space.device_names, "device_specs": space.devices,
            "budgets": space.budgets, "execution": execution, "variants": variants, "points": points,
            "artifacts_dir": str(Path(artifacts_dir).resolve()), "reports_dir": str(Path(reports_dir).resolve()),
            "results": pareto.device_results(points, space.budgets)}
