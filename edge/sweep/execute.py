"""Ray execution of a sweep: every variant one Ray task with one CPU, in a fresh worker process
(max_calls=1: TensorFlow state never leaks from one variant's training into the next, and a crash
costs one variant). A task that raises or whose worker dies is retried once, then recorded; the
sweep goes on. At most as many tasks are in flight as the cluster has CPUs, so "running" is what runs.

A worker on another node than the driver works in a temporary folder and sends the variant's folders
back as a tar archive, unpacked into the local artifacts and reports folders.
"""
from __future__ import annotations

import importlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from groundfloor.errors import BadInput


@dataclass
class Job:
    index: int
    variant: dict
    ctx: dict                     # art_dir, report_dir, variant_id, ... (what the step needs)
    attempts: list = field(default_factory=list)   # one record per failed attempt


def resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------- shipping folders

def pack(folders: dict) -> bytes:
    """A gzip tar of {label: folder}, each under its label."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for label, folder in folders.items():
            if Path(folder).is_dir():
                tar.add(folder, arcname=label)
    return buf.getvalue()


def unpack(archive: bytes, folders: dict):
    """Unpack pack()'s archive: each label's content replaces folders[label] (extracted beside it
    first, then renamed into place, so a half-unpacked folder never stands in for the real one)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for label, dest in folders.items():
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            members = [m for m in tar.getmembers() if m.name == label or m.name.startswith(label + "/")]
            if not members:
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
            tar.extractall(tmp, members=members, filter="data")
            old = dest.with_name(f".{dest.name}.old")
            if dest.exists():
                shutil.rmtree(old, ignore_errors=True)
                dest.rename(old)
            (tmp / label).rename(dest)
            shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)


def _fix_bench_path(report_dir: Path, art_dir: Path):
    """A shipped bench.json names the worker's folder: point it at the local one."""
    from groundfloor.fileio import read_json, write_json
    p = report_dir / "bench.json"
    if p.is_file():
        b = read_json(p)
        b["artifacts_dir"] = str(art_dir)
        write_json(p, b)


def in_worker(target: str, variant: dict, ctx: dict, driver_node: str, force_ship: bool) -> dict:
    """The Ray task body: run the step here, or in a temporary folder shipped back when this is not
    the driver's node (force_ship: always, for tests)."""
    import ray
    node = ray.get_runtime_context().get_node_id()
    step = resolve(target)
    start = time.perf_counter()
    out = {"node": node, "pid": os.getpid(), "host": socket.gethostname()}
    if node == driver_node and not force_ship:
        return dict(out, value=step(variant, ctx), seconds=time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="edge-sweep-") as tmp:
        local = dict(ctx, art_dir=str(Path(tmp) / "art"), report_dir=str(Path(tmp) / "rep"))
        value = step(variant, local)
        archive = pack({"art": local["art_dir"], "rep": local["report_dir"]})
    return dict(out, value=value, archive=archive, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------- connecting

def _host_port(address: str):
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise BadInput(None, f"--ray {address}: use HOST:PORT (the head's GCS port, e.g. 10.0.0.5:6379), "
                             "ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def connect(address: str | None, workers: int | None):
    """ray.init: a local instance with `workers` CPUs (default: all), or an existing cluster at
    address. Returns True when this call started the instance (and so shuts it down)."""
    import logging
    import ray
    if address and address != "auto":
        host, port = _host_port(address)
        try:   # fail in seconds with one line, not after ray.init's minute of retries
            socket.create_connection((host, port), timeout=5).close()
        except OSError as e:
            raise BadInput(None, f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from None
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    try:
        if address:
            ray.init(address=address, **kw)
        else:   # workers at normal priority (Ray's default nices them to 15): a sweep gets the CPU
            # share any other `edge` command gets, not what a busy machine leaves over
            ray.init(num_cpus=workers or os.cpu_count(), _system_config={"worker_niceness": 0}, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BadInput(None, f"cannot start Ray (--ray {address or 'local'}): {str(e).splitlines()[0]}") from None
    return not address


# --------------------------------------------------------------------------- the loop

def _fmt_s(s):
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


class Progress:
    """Variants done, running, failed, queued and time left, printed when something changes (and at
    most every `every` seconds while nothing does)."""

    def __init__(self, total, slots, print_fn, every=30.0):
        self.total, self.slots, self.print, self.every = total, slots, print_fn, every
        self.done = self.failed = self.running = 0
        self.durations, self.start, self.last = [], time.perf_counter(), 0.0

    def line(self) -> str:
        left = self.total - self.done - self.failed
        eta = ""
        if self.durations and left:
            per = sum(self.durations) / len(self.durations)
            eta = f", ~{_fmt_s(per * left / max(1, min(self.slots, left)))} left"
        queued = left - self.running
        return (f"[sweep] {self.done + self.failed}/{self.total} finished: {self.done} done, {self.failed} failed, "
                f"{self.running} running, {queued} queued{eta} ({_fmt_s(time.perf_counter() - self.start)} elapsed)")

    def show(self, force=False):
        now = time.perf_counter()
        if force or now - self.last >= self.every:
            self.print(self.line())
            self.last = now


def _failure(e) -> dict:
    import ray
    kind = "crashed" if isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)) else \
        "raised" if isinstance(e, ray.exceptions.RayTaskError) else "error"
    cause = getattr(e, "cause", None) if kind == "raised" else None
    msg = f"{type(cause).__name__}: {cause}" if cause is not None else str(e).strip().splitlines()[-1]
    return {"status": kind, "error": msg[:500]}


def run_jobs(jobs: list[Job], target: str, on_done, print_fn=print, retries: int = 1, force_ship=False,
             timeout_s: float | None = None, every: float = 30.0) -> dict:
    """Run every job on the connected Ray instance. on_done(job, outcome) is called as each job
    finishes: outcome {"status": "ok", "value", "seconds", ...} or {"status": "raised" | "crashed" |
    "timeout", "error", "attempts"}. Returns {"slots", "seconds"}."""
    import ray
    slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(num_cpus=1, max_retries=0, max_calls=1)(in_worker)
    driver_node = ray.get_runtime_context().get_node_id()
    queue, inflight = list(jobs), {}
    prog = Progress(len(jobs), slots, print_fn, every)
    start = time.perf_counter()
    try:
        while queue or inflight:
            while queue and len(inflight) < slots:
                job = queue.pop(0)
                ref = remote.remote(target, job.variant, job.ctx, driver_node, force_ship)
                inflight[ref] = (job, time.perf_counter())
            prog.running = len(inflight)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                job, t0 = inflight.pop(ref)
                prog.running = len(inflight)
                try:
                    res = ray.get(ref)
                except Exception as e:   # the variant raised, or its worker died: record, retry once
                    _retry_or_record(job, _failure(e), queue, retries, on_done, prog, print_fn)
                    continue
                if res.get("archive"):
                    unpack(res.pop("archive"), {"art": job.ctx["art_dir"], "rep": job.ctx["report_dir"]})
                    _fix_bench_path(Path(job.ctx["report_dir"]), Path(job.ctx["art_dir"]))
                prog.durations.append(res["seconds"])
                prog.done += 1
                on_done(job, dict(res, status="ok", attempts=job.attempts))
                prog.show(force=True)
            for ref, (job, t0) in list(inflight.items()):
                if timeout_s and time.perf_counter() - t0 > timeout_s:
                    ray.cancel(ref, force=True)
                    inflight.pop(ref)
                    prog.running = len(inflight)
                    _retry_or_record(job, {"status": "timeout", "error": f"no result after {timeout_s:.0f} s"},
                                     queue, retries, on_done, prog, print_fn)
            prog.running = len(inflight)
            prog.show()
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        raise
    return {"slots": slots, "seconds": round(time.perf_counter() - start, 3)}


def _retry_or_record(job, failure, queue, retries, on_done, prog, print_fn):
    job.attempts.append(failure)
    vid = job.ctx.get("variant_id")
    if len(job.attempts) <= retries:
        print_fn(f"[sweep] {vid}: {failure['status']} ({failure['error']}); retrying")
        queue.append(job)
        return
    print_fn(f"[sweep] {vid}: {failure['status']} again ({failure['error']}); recorded, the sweep goes on")
    prog.failed += 1
    on_done(job, dict(failure, attempts=job.attempts))
    prog.show(force=True)
