"""`edge sweep`: the space file, the Pareto fronts and the recommendation against hand-computed
answers, and the Ray execution on a local instance each test starts: failures and crashes recorded
while the other variants finish, the cache, artifacts shipped back, bad input. One end-to-end sweep
trains two tiny real variants (1 epoch) through export and bench (the emulated stage is skipped
there: it is what `make sweep` and the example space run)."""
import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from export_helpers import text_file

from edge.cli import main
from edge.sweep import pareto
from edge.sweep.run import FAKE_STEP, run_sweep
from edge.sweep.benchmark import real_space_text
from edge.sweep.space import load_space, space_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "edge" / "tasks" / "sweep_example.toml"

TINY = space_text("tiny", {"units": [8, 16, 32, 64], "window": [16], "epochs": 1}, ["tflite_int8", "tflite_float32"],
                  ["cortex_m4f"], budgets={"cortex_m4f": {"max_latency_ms": 5.0}})


def _write(tmp_path, text, name="space.toml"):
    return text_file(tmp_path, name, text)


# --------------------------------------------------------------------------- the space file

def test_example_space_parses_into_its_grid():
    s = load_space(EXAMPLE)
    assert s.task == "seattle_temp" and s.kind == "regression"
    assert len(s.variants()) == 2 * 3 * 2 * 2 * 1 * 1
    assert s.budgets["cortex_m4f"] == {"max_rmse": 1.2, "max_latency_ms": 10.0, "max_ram_kib": 48.0,
                                       "max_flash_kib": 160.0}
    assert s.budgets["cortex_m7"] == {"max_rmse": 1.2, "max_latency_ms": 2.0}


def test_range_table_expands_inclusive(tmp_path):
    s = load_space(_write(tmp_path, TINY.replace("units = [8, 16, 32, 64]", "units = {from = 8, to = 32, step = 8}")))
    assert s.axes["units"] == [8, 16, 24, 32]


@pytest.mark.parametrize("old,new,expect", [
    ("epochs = 1", "epochs = 1\nepoch = 2", "unknown key 'space.epoch'"),
    ('name = "tiny"', 'name = "tiny"\ncolour = 1', "unknown key 'colour'"),
    ("units = [8, 16, 32, 64]", "units = []", "space.units: empty range"),
    ("units = [8, 16, 32, 64]", "units = {from = 32, to = 8}", "space.units: empty range"),
    ('candidates = ["tflite_int8", "tflite_float32"]', "candidates = []", "quantize.candidates: empty range"),
    ('candidates = ["tflite_int8", "tflite_float32"]', 'candidates = ["int4"]', "unknown candidate 'int4'"),
    ("max_latency_ms = 5.0", "max_latency = 5.0", "unknown key 'budgets.cortex_m4f.max_latency'"),
    ("max_latency_ms = 5.0", "min_accuracy = 0.9", "a regression task is judged with 'max_rmse'"),
    ("[budgets.cortex_m4f]", "[budgets.cortex_m9]", "budgets.cortex_m9: not one of the sweep's devices"),
    ("window = [16]", 'window = [16]\ncell = ["rnn"]', "space.cell: 'rnn' is not one of lstm, gru"),
])
def test_bad_space_is_one_line_exit_2(tmp_path, capsys, old, new, expect):
    text = TINY.replace(old, new)
    assert text != TINY
    code = main(["sweep", str(_write(tmp_path, text))])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and expect in err and "space.toml" in err


# --------------------------------------------------------------------------- Pareto and the choice

def _p(error, lat, ram, flash, **kw):
    return dict({"error": error, "metric": error, "metric_name": "rmse", "latency_ms": lat, "ram_bytes": ram,
                 "flash_bytes": flash, "runs_on_device": True, "why": "", "ram_limit_device": 262144,
                 "flash_limit_device": 1048576}, **kw)


def test_pareto_front_matches_hand_computed():
    pts = [_p(1.0, 1.0, 100, 100),   # 0: front (best latency)
           _p(0.5, 2.0, 100, 100),   # 1: front (better error)
           _p(0.6, 2.0, 100, 100),   # 2: dominated by 1
           _p(0.5, 2.0, 100, 100),   # 3: equal to 1: both stay
           _p(0.4, 3.0, 200, 200),   # 4: front (best error)
           _p(0.9, 1.5, 50, 300),    # 5: front (best RAM)
           _p(1.0, 1.0, 100, 101),   # 6: dominated by 0 (flash)
           _p(None, 0.1, 1, 1)]      # 7: unmeasured error: never on the front
    assert pareto.pareto_front(pts) == [0, 1, 3, 4, 5]
    # (error, latency): 6 equals 0 there, so both stay; 5 (0.9, 1.5) is beaten by neither 0 nor 1
    assert pareto.pareto_front(pts, ("error", "latency_ms")) == [0, 1, 3, 4, 5, 6]
    # (error, RAM): 0 and 6 lose to 1 (same RAM, worse error); 5 has the least RAM
    assert pareto.pareto_front(pts, ("error", "ram_bytes")) == [1, 3, 4, 5]
    assert pareto.pareto_front([]) == []


def test_recommend_smallest_meeting_every_budget():
    pts = [_p(0.5, 2.0, 30_000, 90_000), _p(0.6, 1.0, 20_000, 70_000), _p(0.4, 1.0, 20_000, 60_000),
           _p(0.3, 9.0, 10_000, 50_000)]
    rec = pareto.recommend(pts, {"max_latency_ms": 5.0, "max_rmse": 0.55})
    assert rec["status"] == "met" and rec["index"] == 2           # 3 is smaller but too slow
    rec = pareto.recommend(pts, {"max_latency_ms": 5.0, "max_rmse": 0.55, "max_flash_kib": 55})
    assert rec["status"] == "missed"
    # 2: flash 58.6 KiB over 55 by 6.5 %; 3: latency over by 80 %; 0: flash +64 %; 1: rmse and flash
    assert rec["index"] == 2
    (miss,) = rec["misses"]
    assert miss["budget"] == "max_flash_kib" and math.isclose(miss["excess"], (60_000 / 1024 - 55) / 55)
    assert "max_flash_kib: 58.59 > 55" in pareto.describe_misses(rec["misses"])


def test_classification_budget_and_device_limits():
    acc = [dict(_p(1 - a, 1.0, 1000, 1000), metric=a, metric_name="accuracy") for a in (0.91, 0.95)]
    assert pareto.recommend(acc, {"min_accuracy": 0.93})["index"] == 1
    too_big = [_p(0.1, 1.0, 300_000, 1000)]   # over the profile's SRAM
    rec = pareto.recommend(too_big, {})
    assert rec["status"] == "missed" and rec["misses"][0]["budget"] == "device_ram"
    cannot = [_p(0.1, None, 1000, 1000, runs_on_device=False, why="cortex_m4f runs tflm; none ran it")]
    assert pareto.recommend(cannot, {})["misses"][0]["budget"] == "runs_on_device"


def _timed(error, kinds, **kw):
    """A point whose device figure is what `edge check` reads: emulated where it has one, else estimated."""
    kind = "emulated" if kinds.get("emulated") is not None else "estimated"
    return _p(error, kinds[kind], 20_000, 70_000, latency_kind=kind,
              latency_by_kind=dict({"emulated": None, "measured_host": 0.05}, **kinds), **kw)


def test_mixed_latency_kinds_are_compared_on_one_kind():
    """int8 has the emulated figure and the estimate, float only the estimate. Mixed, the float file's
    estimate (2.0) would beat int8's emulated 3.0 and push it off the front; compared on the estimate
    for both (int8 1.0), both stay. Budgets still judge each on its device figure (int8: emulated)."""
    pts = [_timed(0.5, {"emulated": 3.0, "estimated": 1.0}, artifact="tflite_int8"),
           _timed(0.4, {"estimated": 2.0}, artifact="tflite_float32"),
           dict(_p(0.1, None, 1, 1), device="cortex_m4f", runs_on_device=False)]   # not timed: does not count
    for p in pts:
        p.setdefault("device", "cortex_m4f")
    assert pareto.pareto_front(pts) == [1]                      # what the device figures alone would give
    res = pareto.device_results(pts, {"cortex_m4f": {"max_latency_ms": 2.5}})["cortex_m4f"]
    assert res["latency_basis"] == {"kind": "estimated", "points": 2, "have": {"emulated": 1, "estimated": 2}}
    assert [p["latency_compared_ms"] for p in pts[:2]] == [1.0, 2.0]
    assert {p["latency_compared_kind"] for p in pts} == {"estimated"}
    assert res["front"] == [0, 1] and res["fronts_2d"]["latency_ms"] == [0, 1]
    assert res["recommendation"]["index"] == 1                  # int8's emulated 3.0 ms misses 2.5
    assert "only 1 have an emulated figure" in pareto.describe_basis(res["latency_basis"])
    # every point emulated: the emulated figures decide
    both = [_timed(0.5, {"emulated": 3.0, "estimated": 1.0}, device="d"), _timed(0.4, {"emulated": 2.0,
                                                                                      "estimated": 2.5}, device="d")]
    res = pareto.device_results(both, {"d": {}})["d"]
    assert res["latency_basis"]["kind"] == "emulated" and res["front"] == [1]
    # no kind in common: latency stays out of the comparison, and the report says so
    odd = [_timed(0.5, {"emulated": 3.0}, device="d"), _timed(0.4, {"estimated": 2.0}, device="d")]
    odd[0]["latency_by_kind"]["estimated"] = None
    res = pareto.device_results(odd, {"d": {}})["d"]
    assert res["latency_basis"]["kind"] is None and "latency_ms" not in res["fronts_2d"] and res["front"] == [1]
    assert "latency left out of the front" in pareto.describe_basis(res["latency_basis"])


def test_mixed_kinds_in_the_report_and_the_console_table():
    from edge.sweep.cli import front_table
    from edge.sweep.report import blocks, render_markdown
    pts = [_timed(0.5, {"emulated": 3.0, "estimated": 1.0}, artifact="tflite_int8"),
           _timed(0.4, {"estimated": 2.0}, artifact="tflite_float32")]
    grid = {"cell": "lstm", "units": 8, "layers": 1, "window": 16, "epochs": 1}
    for i, p in enumerate(pts):
        p.update(device="cortex_m4f", variant_id=f"v{i}", grid=grid, fit_verdict="fits")
    record = {"name": "mixed", "space_file": "s.toml", "created": "now", "candidates": ["tflite_int8"],
              "devices": ["cortex_m4f"], "execution": {"ray": "local", "slots": 1, "seconds": 0}, "variants": [],
              "points": pts, "results": pareto.device_results(pts, {"cortex_m4f": {}})}
    md = render_markdown(record, blocks(record, {}))
    assert "latency compared as estimated for all 2 point(s): only 1 have an emulated figure" in md
    assert "| 3 (emulated) | 1 (estimated) | 0.05 |" in md and "| 2 (estimated) | 2 (estimated) |" in md
    table = front_table(record, "cortex_m4f")
    assert "3 (emulated)" in table and "1 (estimated)" in table and "compared ms (kind)" in table


def test_ram_and_flash_budgets_in_the_check_config():
    """edge/budgets.py knows the sweep's device keys: KiB of the fit's need, per device only."""
    from edge.budgets import measure, parse_budgets
    from groundfloor.errors import BadInput
    b = parse_budgets({"m": {"cortex_m4f": {"max_ram_kib": 20, "max_flash_kib": 70.5}}}, models=["m"],
                      devices=["cortex_m4f"]).for_device("m", "cortex_m4f")
    assert (b.ram_kib, b.flash_kib) == (20.0, 70.5)
    art = {"status": "ok", "runners": {"tflm": {"status": "ok"}},
           "devices": {"cortex_m4f": {"fit": {"ram": {"need": 20480}, "flash": {"need": 72704}}}}}
    bench = {"devices": {"cortex_m4f": {"runtimes": ["tflm"]}}}
    assert measure("max_ram_kib", art, bench, "cortex_m4f")[0] == 20.0
    assert measure("max_flash_kib", art, bench, "cortex_m4f")[0] == 71.0
    with pytest.raises(BadInput, match="write max_ram_kib or max_flash_kib"):
        parse_budgets({"m": {"cortex_m4f": {"max_ram_bytes": 1}}}, models=["m"], devices=["cortex_m4f"])


# --------------------------------------------------------------------------- Ray (simulated steps)

def test_raise_and_crash_are_recorded_while_others_finish(tmp_path):
    """units 8 raises, 16 kills its worker (both twice: retried once), 32 crashes on the first try only;
    64 is fine. The worker ships its folder back (force_ship) as a remote node's would."""
    space = load_space(_write(tmp_path, TINY))
    lines = []
    rec = run_sweep(space, tmp_path / "a", tmp_path / "r", workers=2, target=FAKE_STEP, force_ship=True,
                    fake={"raise_units": [8], "crash_units": [16], "flaky_units": [32],
                          "marker_dir": str(tmp_path)}, print_fn=lines.append,
                    every=1.0)
    by_units = {v["grid"]["units"]: v for v in rec["variants"]}
    assert by_units[8]["status"] == "raised" and len(by_units[8]["attempts"]) == 2
    assert "simulated failure for units=8" in by_units[8]["error"]
    assert by_units[16]["status"] == "crashed" and len(by_units[16]["attempts"]) == 2
    assert by_units[32]["status"] == "ok" and [a["status"] for a in by_units[32]["attempts"]] == ["crashed"]
    assert by_units[64]["status"] == "ok" and by_units[64]["attempts"] == []
    for u in (32, 64):   # shipped back into the local artifacts folder
        assert json.loads((Path(by_units[u]["art_dir"]) / "fake_model.json").read_text())["variant"]["units"] == u
    assert {p["variant_id"] for p in rec["points"]} == {by_units[32]["variant_id"], by_units[64]["variant_id"]}
    assert any("retrying" in m for m in lines) and any("2 failed" in m for m in lines)
    sweep = json.loads((tmp_path / "r/sweeps/tiny/sweep.json").read_text())
    assert [v["status"] for v in sweep["variants"]] == ["raised", "crashed", "ok", "ok"]
    assert "Failed variants" in (tmp_path / "r/sweeps/tiny/report.md").read_text()


def test_cache_skips_done_variants_and_widening_runs_only_new_points(tmp_path):
    space_file = _write(tmp_path, TINY)
    first = run_sweep(load_space(space_file), tmp_path / "a", tmp_path / "r", workers=2, target=FAKE_STEP,
                      fake={}, print_fn=lambda m: None)
    assert [v["cached"] for v in first["variants"]] == [False] * 4
    lines = []
    again = run_sweep(load_space(space_file), tmp_path / "a", tmp_path / "r", workers=2, target=FAKE_STEP,
                      fake={}, print_fn=lines.append)
    assert all(v["cached"] for v in again["variants"]) and again["execution"]["slots"] is None   # Ray not started
    assert "4 cached, 0 to run" in lines[0]
    assert again["results"] == first["results"]
    space_file.write_text(TINY.replace("units = [8, 16, 32, 64]", "units = [8, 16, 32, 64, 128]"))
    wider = run_sweep(load_space(space_file), tmp_path / "a", tmp_path / "r", workers=2, target=FAKE_STEP,
                      fake={}, print_fn=lambda m: None)
    assert [v["cached"] for v in wider["variants"]] == [True] * 4 + [False]


def test_no_variant_meets_the_budget_exits_1_with_the_nearest_miss(tmp_path, capsys):
    space = _write(tmp_path, TINY.replace("max_latency_ms = 5.0", "max_latency_ms = 0.001"))
    code = main(["sweep", str(space), "--simulate", "--workers", "2", "--artifacts-dir", str(tmp_path / "a"),
                 "--reports-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 1
    line = next(l for l in out.splitlines() if l.startswith("cortex_m4f:"))
    assert "no variant meets every budget; nearest miss lstm8x1" in line and "max_latency_ms:" in line


def test_unreachable_ray_address_is_one_line(tmp_path, capsys):
    with socket.socket() as s:   # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["sweep", str(_write(tmp_path, TINY)), "--simulate", "--ray", f"127.0.0.1:{port}",
                 "--artifacts-dir", str(tmp_path / "a"), "--reports-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"cannot reach a Ray cluster at 127.0.0.1:{port}" in err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_runs_on_an_existing_cluster_given_by_address(tmp_path):
    """A Ray head started apart from the sweep (`ray start --head`, as a team's cluster would be,
    with token authentication): `--ray HOST:PORT` connects to it with the token from the
    environment, the variants run on its workers, the cluster outlives the sweep."""
    import os
    import secrets
    import shutil
    import signal
    import time
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or pytest.skip("no ray CLI")
    port = _free_port()
    temp = Path("/tmp") / f"edge-ray-{os.getpid()}"      # short: Ray's socket paths have a length limit
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, **auth))
    try:
        deadline = time.monotonic() + 120       # up when `ray status` reaches it (the port opens earlier)
        while time.monotonic() < deadline and subprocess.run(
                [ray_cli, "status", f"--address=127.0.0.1:{port}"], capture_output=True,
                env=dict(os.environ, **auth)).returncode != 0:
            time.sleep(1)
        # its own process, as a user runs it: Ray keeps the first authentication mode a process saw
        run = subprocess.run([sys.executable, "-m", "edge.cli", "sweep", str(_write(tmp_path, TINY)), "--simulate",
                              "--ray", f"127.0.0.1:{port}", "--artifacts-dir", str(tmp_path / "a"),
                              "--reports-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, **auth), cwd=tmp_path)
        assert run.returncode in (0, 1), run.stdout + run.stderr[-3000:]
        rec = json.loads(next((tmp_path / "r").rglob("sweep.json")).read_text())
        assert [v["status"] for v in rec["variants"]] == ["ok"] * 4
        assert rec["execution"]["ray"] == f"127.0.0.1:{port}" and rec["execution"]["slots"] == 2
        assert head.poll() is None                       # the sweep left the cluster running
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


# --------------------------------------------------------------------------- end to end (real training)

def _gate(check_toml: Path, tmp_path, **limits):
    """`edge check` on the sweep's check.toml with some limits rewritten: (exit code, output)."""
    import re
    text = check_toml.read_text()
    for key, value in limits.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value!r}", text, flags=re.MULTILINE)
        assert n == 1, (key, text)
    edited = tmp_path / "edited_check.toml"
    edited.write_text(text)
    p = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(edited), "check", "--junit",
                        str(tmp_path / "check.xml")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    return p.returncode, p.stdout + p.stderr


def by_id(record, point):
    return next(v for v in record["variants"] if v["variant_id"] == point["variant_id"])


def test_tiny_real_sweep_end_to_end_and_check_gates_it(tmp_path):
    """Two tiny LSTM variants trained (1 epoch), exported, benched (no emulated stage: slow, and the
    example space runs it), Pareto, recommendation, report; `edge check` on the written check.toml
    gates every budget the sweep judged the recommendation by: tightening RAM, flash or latency
    below the variant's figure fails it, the figure itself passes."""
    space = _write(tmp_path, real_space_text(
        "e2e", {"units": [4, 8], "window": [8], "epochs": 1}, runs=5, max_samples=40,
        budgets={"max_rmse": 50.0, "cortex_m4f": {"max_latency_ms": 50.0, "max_ram_kib": 200.0,
                                                  "max_flash_kib": 900.0}}))
    cmd = [sys.executable, "-m", "edge.cli", "sweep", str(space), "--workers", "2", "--artifacts-dir",
           str(tmp_path / "a"), "--reports-dir", str(tmp_path / "r")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    rec = json.loads((tmp_path / "r/sweeps/e2e/sweep.json").read_text())
    assert [v["status"] for v in rec["variants"]] == ["ok", "ok"]
    for v in rec["variants"]:
        manifest = json.loads((Path(v["art_dir"]) / "manifest.json").read_text())
        assert manifest["artifacts"]["tflite_int8"]["status"] == "ok"
        assert (Path(v["report_dir"]) / "bench.json").is_file()
    pts = rec["points"]
    assert len(pts) == 2 and all(p["metric"] > 0 and p["latency_ms"] > 0 and p["ram_bytes"] and p["flash_bytes"]
                                 for p in pts)
    r = rec["results"]["cortex_m4f"]["recommendation"]
    best = rec["points"][r["index"]]
    assert r["status"] == "met" and best["grid"]["units"] == 4   # the smaller one
    # no emulated stage: every point has the estimate (and the host timing), so that is what is compared
    assert all(p["latency_kind"] == "estimated" and p["latency_by_kind"]["emulated"] is None
               and p["latency_by_kind"]["measured_host"] > 0 and p["latency_compared_ms"] == p["latency_ms"]
               for p in pts)
    assert rec["results"]["cortex_m4f"]["latency_basis"]["kind"] == "estimated"
    assert "latency compared as estimated (all 2 point(s) have it)" in p.stdout
    assert (tmp_path / "r/sweeps/e2e/figures/pareto_cortex_m4f.png").stat().st_size > 10_000
    assert "Recommended for cortex_m4f" in (tmp_path / "r/sweeps/e2e/report.md").read_text()
    check_toml = tmp_path / "r/sweeps/e2e/check.toml"
    code, out = _gate(check_toml, tmp_path)
    assert code == 0 and "0 failed" in out, out
    for key in ("must_fit", "max_latency_ms", "max_ram_kib", "max_flash_kib", "max_rmse_increase"):
        assert key in out, (key, out)
    ram_kib, flash_kib = best["ram_bytes"] / 1024, best["flash_bytes"] / 1024
    assert _gate(check_toml, tmp_path, max_ram_kib=ram_kib, max_flash_kib=flash_kib,
                 max_latency_ms=best["latency_ms"])[0] == 0           # at the figure: within budget
    for key, figure in (("max_ram_kib", ram_kib), ("max_flash_kib", flash_kib), ("max_latency_ms", best["latency_ms"])):
        code, out = _gate(check_toml, tmp_path, **{key: figure * 0.99})
        assert code == 1 and "1 failed" in out, (key, out)
        assert next(line for line in out.splitlines() if "FAIL" in line).split()[3] == key
    # the metric: max_rmse as a change against the float RMSE on the bench windows; just under the
    # variant's RMSE fails (`edge check` takes the worst of every runtime: never looser than the sweep)
    ref = json.loads((Path(by_id(rec, best)["report_dir"]) / "bench.json").read_text())["float_reference"]["truth"]
    tighter = best["metric"] * 0.99 / ref["rmse"] - 1
    if tighter >= 0:   # a 1-epoch int8 file may beat its float model: no increase to tighten then
        assert _gate(check_toml, tmp_path, max_rmse_increase=tighter)[0] == 1
    # a rerun is a cache hit: no training
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0 and "2 cached, 0 to run" in again.stdout


def test_hung_variant_times_out_and_is_recorded(tmp_path):
    space = load_space(_write(tmp_path, TINY.replace("units = [8, 16, 32, 64]", "units = [8, 16]")))
    rec = run_sweep(space, tmp_path / "a", tmp_path / "r", workers=2, target=FAKE_STEP, fake={"hang_units": [8]},
                    timeout_s=3.0, print_fn=lambda m: None)
    hung, fine = rec["variants"]
    assert hung["status"] == "timeout" and len(hung["attempts"]) == 2 and fine["status"] == "ok"


def test_interrupted_sweep_resumes_from_the_cache(tmp_path):
    """SIGINT once two of six variants are done: exit 130; the rerun runs only the rest."""
    import signal
    import time
    space = _write(tmp_path, TINY.replace("units = [8, 16, 32, 64]", "units = [8, 16, 32, 64, 128, 256]"))
    cmd = [sys.executable, "-m", "edge.cli", "sweep", str(space), "--simulate", "4", "--workers", "2",
           "--artifacts-dir", str(tmp_path / "a"), "--reports-dir", str(tmp_path / "r")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if "finished: 2 done" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    first = again.stdout.splitlines()[0]
    cached = int(first.split("; ")[1].split(" cached")[0])
    assert 2 <= cached < 6, first


# --------------------------------------------------------------------------- the user's data

def _user_npz(tmp_path, steps=24, classes=None):
    import numpy as np
    rng = np.random.RandomState(0)
    x = rng.randn(120, steps, 2).astype("float32")
    y = (rng.randint(0, classes, 120) if classes else x[:, -1, :1].sum(axis=1)).astype("float32")
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=y)
    return path


def test_user_data_space_runs_and_a_too_long_window_is_bad_input(tmp_path, capsys):
    data = _user_npz(tmp_path)
    text = TINY.replace('task = "seattle_temp"', 'path = "mine.npz"\nkind = "regression"').replace(
        "window = [16]", "window = [8, 24]")
    rec = run_sweep(load_space(_write(tmp_path, text)), tmp_path / "a", tmp_path / "r", workers=2,
                    target=FAKE_STEP, fake={}, print_fn=lambda m: None)
    assert rec["data"] == str(data) and len(rec["variants"]) == 8
    assert all(v["status"] == "ok" for v in rec["variants"])
    code = main(["sweep", str(_write(tmp_path, text.replace("window = [8, 24]", "window = [8, 32]"))), "--simulate"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "mine.npz" in err and "space.window 32 is longer than the data's windows (24 steps)" in err


def test_variant_task_builds_the_grid_point(tmp_path):
    """The grid values become the tf-keras stack: cell class, units, layers, Dropout, the head."""
    from edge.sweep.variant import VariantTask
    from export.tfenv import tf_and_keras2
    _, tf_keras = tf_and_keras2()
    v = {"cell": "gru", "units": 6, "layers": 2, "window": 10, "dropout": 0.25, "epochs": 1, "seed": 1,
         "batch_size": 16, "learning_rate": 0.01}
    task = VariantTask(v, "v1", data=_user_npz(tmp_path, classes=3), kind="classification")
    split = task.load()
    assert split.x_train.shape[1:] == (10, 2) and split.y_train.dtype.kind == "i"
    model = task.build(tf_keras, split.x_train.shape[1:], batch_size=1)
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["GRU", "Dropout", "GRU", "Dropout", "Dense"]
    assert [model.layers[i].units for i in (1, 3)] == [6, 6] and model.layers[1].return_sequences
    assert not model.layers[3].return_sequences and model.output_shape == (1, 3)
